//! Authentication of API callers: local users with argon2 password hashes, signed expiring
//! bearer tokens, API tokens for automation, and per-node credentials that agents get with the
//! cluster's join token. What each principal may do is decided in [`policy`]; the HTTP side
//! (the guard layer and the `auth_proxy` paths) is in [`http`].
//!
//! Tokens are `ctv1.<payload>.<mac>`: the payload is base64url JSON [`Claims`], the MAC an
//! HMAC-SHA256 over `ctv1.<payload>` with a key kept in the store, so that every netmaster on a
//! shared etcd accepts a token another one issued, without a store read per request.
//!
//! Store layout (beside the rest of the state, so that `migrate` and etcd backups carry it):
//!
//! | key | value |
//! |---|---|
//! | `/contiv/auth/signing-key` | the HMAC key, base64url |
//! | `/contiv/auth/users/<name>` | [`StoredUser`] |
//! | `/contiv/auth/join-token` | SHA-256 (hex) of the join token agents present |

pub mod http;
pub mod policy;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use store::{Compare, Op, Store, StoreError, Txn};

pub const AUTH: &str = "/contiv/auth/";
pub const SIGNING_KEY: &str = "/contiv/auth/signing-key";
pub const USERS: &str = "/contiv/auth/users/";
pub const JOIN_TOKEN: &str = "/contiv/auth/join-token";

/// The file (under the data dir) the first start writes the generated admin credential to.
pub const ADMIN_CREDENTIAL_FILE: &str = "admin-credential.json";
/// The file (under the data dir) the first start writes the join token to.
pub const JOIN_TOKEN_FILE: &str = "join-token";

const TOKEN_PREFIX: &str = "ctv1.";

/// What a principal is. Contiv's auth_proxy had `admin` and `ops`; `node` is an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, users and credentials included.
    Admin,
    /// Contiv's ops: the objects of the tenants it is authorized on (`*`: every tenant).
    Ops,
    /// One agent: reads what agents need, writes only its own registration and endpoints.
    Node,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Ops => "ops",
            Role::Node => "node",
        }
    }
}

/// A verified caller: what a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user name, the API token's name, or the node's hostname.
    pub sub: String,
    pub role: Role,
    /// For `ops`: the tenants it is authorized on; `*` stands for every tenant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
    /// Unix seconds after which the token is refused.
    pub exp: u64,
    /// Unix seconds it was issued at.
    pub iat: u64,
}

impl Claims {
    /// Whether an `ops` principal may act on `tenant` (admins may act on every tenant).
    pub fn has_tenant(&self, tenant: &str) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Ops => self.tenants.iter().any(|t| t == "*" || t == tenant),
            Role::Node => false,
        }
    }

    /// Whether the principal sees every tenant.
    pub fn all_tenants(&self) -> bool {
        self.role == Role::Admin || self.tenants.iter().any(|t| t == "*")
    }

    /// How the principal is named in messages: `ops user alice`.
    pub fn describe(&self) -> String {
        match self.role {
            Role::Node => format!("node {}", self.sub),
            r => format!("{} user {}", r.name(), self.sub),
        }
    }
}

/// A local user as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredUser {
    pub username: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
    /// The argon2id PHC string.
    #[serde(rename = "passwordHash")]
    pub password_hash: String,
    #[serde(default)]
    pub disable: bool,
}

/// A local user as the API shows it (no hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalUser {
    pub username: String,
    pub role: Role,
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub disable: bool,
}

impl From<&StoredUser> for LocalUser {
    fn from(u: &StoredUser) -> Self {
        LocalUser {
            username: u.username.clone(),
            role: u.role,
            tenants: u.tenants.clone(),
            disable: u.disable,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no credentials: log in with `netctl login`, or send a token in the X-Auth-Token header (or Authorization: Bearer)"
    )]
    Missing,
    #[error("the token is not valid ({0}): log in again with `netctl login`")]
    Invalid(&'static str),
    #[error("the token expired {ago} s ago: log in again with `netctl login`")]
    Expired { ago: u64 },
    #[error("wrong username or password")]
    BadLogin,
    #[error(
        "the join token is wrong: give the one in {JOIN_TOKEN_FILE} under netmaster's data dir"
    )]
    BadJoinToken,
    #[error("{action}: {source}")]
    Store {
        action: String,
        #[source]
        source: StoreError,
    },
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Hash(String),
}

fn store_err(action: impl Into<String>) -> impl FnOnce(StoreError) -> AuthError {
    let action = action.into();
    move |source| AuthError::Store { action, source }
}

/// Settings of the authentication.
#[derive(Debug, Clone)]
pub struct AuthOptions {
    /// How long a login token lives.
    pub token_ttl: Duration,
    /// How long a node credential lives (the agent joins again with the join token after).
    pub node_token_ttl: Duration,
    /// Where the first start writes the admin credential and the join token.
    pub data_dir: PathBuf,
}

/// The authenticator: the signing key, and the store the users live in.
pub struct Auth {
    key: ring::hmac::Key,
    store: Arc<dyn Store>,
    pub opts: AuthOptions,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `n` random bytes from the system's generator, base64url.
pub fn random_secret(n: usize) -> String {
    let mut b = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the system random generator works");
    B64.encode(b)
}

fn sha256_hex(s: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `text` to `path`, readable by its owner only.
fn write_private(path: &Path, text: &str) -> Result<(), AuthError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| AuthError::Io {
        action: format!("write {}", path.display()),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| AuthError::Io {
            action: format!("create {}", dir.display()),
            source,
        })?;
    }
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)
}

pub fn hash_password(password: &str) -> Result<String, AuthError> {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(format!("hash a password: {e}")))
}

fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

impl Auth {
    /// Loads the signing key, or makes it at the first start; makes the first admin and the join
    /// token when the store has none, writing them to files under the data dir.
    pub async fn open(store: Arc<dyn Store>, opts: AuthOptions) -> Result<Arc<Auth>, AuthError> {
        let key = ensure_secret(store.as_ref(), SIGNING_KEY, || random_secret(32)).await?;
        let key = B64
            .decode(key.trim())
            .map_err(|_| AuthError::Invalid("the stored signing key is not base64url"))?;
        let auth = Arc::new(Auth {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
            store,
            opts,
        });
        auth.bootstrap().await?;
        Ok(auth)
    }

    async fn bootstrap(&self) -> Result<(), AuthError> {
        let (users, _) = self
            .store
            .list(USERS)
            .await
            .map_err(store_err("list the users"))?;
        if users.is_empty() {
            let password = random_secret(18);
            let user = StoredUser {
                username: "admin".into(),
                role: Role::Admin,
                tenants: vec![],
                password_hash: hash_password(&password)?,
                disable: false,
            };
            // Several masters may start at once: the one whose write lands writes the file.
            if self.create_user(&user).await? {
                let path = self.opts.data_dir.join(ADMIN_CREDENTIAL_FILE);
                let text = serde_json::json!({"username": "admin", "password": password});
                write_private(&path, &format!("{text}\n"))?;
                tracing::warn!(
                    file = %path.display(),
                    "made the first admin user; its password is in the file (readable by root only): log in with `netctl login`, then change it or make other users"
                );
            }
        }
        if self
            .store
            .get(JOIN_TOKEN)
            .await
            .map_err(store_err("read the join token"))?
            .is_none()
        {
            self.rotate_join_token_if(true).await?;
        }
        Ok(())
    }

    /// Makes a new join token (only if there is none, with `only_if_absent`), writes it to the
    /// data dir and returns it.
    async fn rotate_join_token_if(
        &self,
        only_if_absent: bool,
    ) -> Result<Option<String>, AuthError> {
        let token = random_secret(24);
        let mut txn = Txn::new().then(Op::put(JOIN_TOKEN, sha256_hex(&token)));
        if only_if_absent {
            txn = txn.when(Compare::absent(JOIN_TOKEN));
        }
        let r = self
            .store
            .txn(txn)
            .await
            .map_err(store_err("write the join token"))?;
        if !r.succeeded {
            return Ok(None);
        }
        let path = self.opts.data_dir.join(JOIN_TOKEN_FILE);
        write_private(&path, &format!("{token}\n"))?;
        tracing::warn!(file = %path.display(), "made a new join token: agents join with it (netplugin --join-token-file)");
        Ok(Some(token))
    }

    /// Replaces the join token (credentials nodes already hold stay valid until they expire).
    pub async fn rotate_join_token(&self) -> Result<String, AuthError> {
        Ok(self
            .rotate_join_token_if(false)
            .await?
            .expect("an unconditional write succeeds"))
    }

    /// Signs `claims` into a token.
    pub fn issue(&self, claims: &Claims) -> String {
        let payload = B64.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let signed = format!("{TOKEN_PREFIX}{payload}");
        let mac = ring::hmac::sign(&self.key, signed.as_bytes());
        format!("{signed}.{}", B64.encode(mac.as_ref()))
    }

    /// A token for `sub` with `role`, living `ttl`.
    pub fn issue_for(&self, sub: &str, role: Role, tenants: Vec<String>, ttl: Duration) -> String {
        let iat = now();
        self.issue(&Claims {
            sub: sub.into(),
            role,
            tenants,
            exp: iat + ttl.as_secs(),
            iat,
        })
    }

    /// Checks a token's signature and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let (signed, mac) = token
            .rsplit_once('.')
            .ok_or(AuthError::Invalid("not a netmaster token"))?;
        let payload = signed
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(AuthError::Invalid("not a netmaster token"))?;
        let mac = B64
            .decode(mac)
            .map_err(|_| AuthError::Invalid("malformed signature"))?;
        ring::hmac::verify(&self.key, signed.as_bytes(), &mac)
            .map_err(|_| AuthError::Invalid("bad signature, or signed by another cluster"))?;
        let claims: Claims = B64
            .decode(payload)
            .ok()
            .and_then(|p| serde_json::from_slice(&p).ok())
            .ok_or(AuthError::Invalid("malformed payload"))?;
        let now = now();
        if claims.exp <= now {
            return Err(AuthError::Expired {
                ago: now - claims.exp,
            });
        }
        Ok(claims)
    }

    /// Checks a user's password and issues a login token.
    pub async fn login(&self, username: &str, password: &str) -> Result<String, AuthError> {
        let user = self.user(username).await?;
        let Some(user) = user.filter(|u| !u.disable) else {
            // Hash anyway, so that the answer's timing does not tell which users exist.
            let (p, h) = (password.to_string(), dummy_hash());
            let _ = tokio::task::spawn_blocking(move || verify_password(&p, h)).await;
            return Err(AuthError::BadLogin);
        };
        let (p, h) = (password.to_string(), user.password_hash.clone());
        // argon2 takes tens of milliseconds of CPU: keep it off the async workers.
        let ok = tokio::task::spawn_blocking(move || verify_password(&p, &h))
            .await
            .unwrap_or(false);
        if !ok {
            return Err(AuthError::BadLogin);
        }
        Ok(self.issue_for(&user.username, user.role, user.tenants, self.opts.token_ttl))
    }

    /// Checks the join token and issues `host` its node credential.
    pub async fn join(&self, host: &str, join_token: &str) -> Result<String, AuthError> {
        let stored = self
            .store
            .get(JOIN_TOKEN)
            .await
            .map_err(store_err("read the join token"))?
            .ok_or(AuthError::BadJoinToken)?;
        let want = sha256_hex(join_token.trim());
        // Compares hashes, so that timing tells nothing of the token itself.
        if stored.value != want.as_bytes() {
            return Err(AuthError::BadJoinToken);
        }
        Ok(self.issue_for(host, Role::Node, vec![], self.opts.node_token_ttl))
    }

    pub async fn user(&self, name: &str) -> Result<Option<StoredUser>, AuthError> {
        let kv = self
            .store
            .get(&format!("{USERS}{name}"))
            .await
            .map_err(store_err(format!("read user {name}")))?;
        Ok(kv.and_then(|kv| serde_json::from_slice(&kv.value).ok()))
    }

    pub async fn users(&self) -> Result<Vec<StoredUser>, AuthError> {
        let (kvs, _) = self
            .store
            .list(USERS)
            .await
            .map_err(store_err("list the users"))?;
        Ok(kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect())
    }

    /// Creates a user unless one of that name exists; false when it exists.
    pub async fn create_user(&self, user: &StoredUser) -> Result<bool, AuthError> {
        let key = format!("{USERS}{}", user.username);
        let r = self
            .store
            .txn(
                Txn::new()
                    .when(Compare::absent(&key))
                    .then(Op::put(&key, serde_json::to_vec(user).expect("serialize"))),
            )
            .await
            .map_err(store_err(format!("create user {}", user.username)))?;
        Ok(r.succeeded)
    }

    pub async fn put_user(&self, user: &StoredUser) -> Result<(), AuthError> {
        let key = format!("{USERS}{}", user.username);
        self.store
            .put(&key, serde_json::to_vec(user).expect("serialize"))
            .await
            .map_err(store_err(format!("write user {}", user.username)))?;
        Ok(())
    }

    /// Deletes a user; false when there was none.
    pub async fn delete_user(&self, name: &str) -> Result<bool, AuthError> {
        let key = format!("{USERS}{name}");
        let existed = self.user(name).await?.is_some();
        self.store
            .delete(&key)
            .await
            .map_err(store_err(format!("delete user {name}")))?;
        Ok(existed)
    }
}

/// A valid argon2 hash of a random password, computed once, to spend the same time on logins
/// of unknown users.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| hash_password(&random_secret(12)).unwrap_or_default())
}

/// Reads `key`, or writes `make()` there if it is absent (the first writer wins), and returns it.
async fn ensure_secret(
    store: &dyn Store,
    key: &str,
    make: impl FnOnce() -> String,
) -> Result<String, AuthError> {
    if let Some(kv) = store
        .get(key)
        .await
        .map_err(store_err(format!("read {key}")))?
    {
        return Ok(String::from_utf8_lossy(&kv.value).into_owned());
    }
    store
        .txn(
            Txn::new()
                .when(Compare::absent(key))
                .then(Op::put(key, make())),
        )
        .await
        .map_err(store_err(format!("write {key}")))?;
    let kv = store
        .get(key)
        .await
        .map_err(store_err(format!("read {key}")))?
        .ok_or(AuthError::Invalid(
            "the signing key vanished from the store",
        ))?;
    Ok(String::from_utf8_lossy(&kv.value).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn auth() -> (Arc<Auth>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            store::EmbeddedStore::open(store::EmbeddedOptions::new(dir.path().join("db.redb")))
                .unwrap();
        let a = Auth::open(
            Arc::new(store),
            AuthOptions {
                token_ttl: Duration::from_secs(60),
                node_token_ttl: Duration::from_secs(60),
                data_dir: dir.path().to_path_buf(),
            },
        )
        .await
        .unwrap();
        (a, dir)
    }

    #[tokio::test]
    async fn tokens_round_trip_and_are_checked() {
        let (a, _d) = auth().await;
        let t = a.issue_for(
            "alice",
            Role::Ops,
            vec!["A".into()],
            Duration::from_secs(60),
        );
        let c = a.verify(&t).unwrap();
        assert_eq!((c.sub.as_str(), c.role), ("alice", Role::Ops));
        assert!(c.has_tenant("A") && !c.has_tenant("B"));
        // A changed payload (admin instead of ops) fails the MAC.
        let (signed, mac) = t.rsplit_once('.').unwrap();
        let mut claims = c.clone();
        claims.role = Role::Admin;
        let forged = format!(
            "{TOKEN_PREFIX}{}.{mac}",
            B64.encode(serde_json::to_vec(&claims).unwrap())
        );
        assert_ne!(forged.rsplit_once('.').unwrap().0, signed);
        assert!(matches!(a.verify(&forged), Err(AuthError::Invalid(_))));
        assert!(matches!(a.verify("nonsense"), Err(AuthError::Invalid(_))));
        let old = a.issue(&Claims {
            exp: now() - 5,
            ..c
        });
        assert!(matches!(a.verify(&old), Err(AuthError::Expired { .. })));
    }

    #[tokio::test]
    async fn first_start_writes_the_admin_credential_and_the_join_token() {
        let (a, d) = auth().await;
        let file = d.path().join(ADMIN_CREDENTIAL_FILE);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let cred: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let pw = cred["password"].as_str().unwrap();
        let t = a.login("admin", pw).await.unwrap();
        assert_eq!(a.verify(&t).unwrap().role, Role::Admin);
        assert!(matches!(
            a.login("admin", "wrong").await,
            Err(AuthError::BadLogin)
        ));
        assert!(matches!(
            a.login("nobody", pw).await,
            Err(AuthError::BadLogin)
        ));
        let join = std::fs::read_to_string(d.path().join(JOIN_TOKEN_FILE)).unwrap();
        let n = a.join("h1", &join).await.unwrap();
        let c = a.verify(&n).unwrap();
        assert_eq!((c.sub.as_str(), c.role), ("h1", Role::Node));
        assert!(matches!(
            a.join("h1", "guess").await,
            Err(AuthError::BadJoinToken)
        ));
    }
}
