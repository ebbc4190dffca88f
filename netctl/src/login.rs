//! `netctl login`: authenticate to Contiv's auth_proxy, as Contiv's netctl did.
//!
//! Prompts for a user name and password (the password without echo), POSTs them to auth_proxy's
//! `/api/v1/auth_proxy/login/` over https, and writes auth_proxy's answer (`{"token":"…"}`) as
//! received to `~/.netctl/config.json` (directory mode 0700, file 0600). Later commands send that
//! token in the `x-auth-token` header, over https only.
//!
//! When stdin is not a terminal, the user name and the password are its first two lines, so a
//! script can log in: `printf 'admin\n%s\n' "$PASS" | netctl login`.

use crate::error::{CtlError, Result};
use model::{Client, ClientError};
use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

/// `~/.netctl/config.json`, from `$HOME`.
fn config_path() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".netctl").join("config.json"))
}

/// The token a `netctl login` kept, if there is one.
pub fn saved_token() -> Result<Option<String>> {
    let Some(path) = config_path() else {
        return Ok(None);
    };
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CtlError::io(format!("read {}", path.display()), e)),
    };
    #[derive(serde::Deserialize)]
    struct Saved {
        token: String,
    }
    match serde_json::from_slice::<Saved>(&text) {
        Ok(s) => Ok(Some(s.token)),
        Err(e) => Err(CtlError::Invalid(format!(
            "{}: no token in it ({e}); run netctl login again",
            path.display()
        ))),
    }
}

pub async fn run(client: &Client) -> Result<()> {
    // A local unix socket (netmaster's --listen-unix) carries nothing over the network either.
    if let Some(u) = client
        .urls()
        .iter()
        .find(|u| !u.starts_with("https://") && !u.starts_with("unix://"))
    {
        return Err(CtlError::Invalid(format!(
            "login needs an https URL (or a unix:// socket) of netmaster or auth_proxy in \
             --netmaster (not {u}): the password is never sent in clear"
        )));
    }
    let path = config_path().ok_or_else(|| {
        CtlError::Invalid("HOME is not set: no place for ~/.netctl/config.json".into())
    })?;
    let (username, password) = read_credentials()?;
    let answer = match client.login(&username, &password).await {
        Ok(a) => a,
        Err(ClientError::Api { status: 401, .. }) => {
            return Err(CtlError::Invalid(
                "login failed: wrong username or password".into(),
            ));
        }
        Err(ClientError::Api { status, message }) => {
            return Err(CtlError::Invalid(format!(
                "login failed ({status}): {message}"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    save(&path, &answer)?;
    crate::out::print("Login successful\n")
}

/// Reads the user name and password: prompted on a terminal (the password without echo), else
/// the first two lines of stdin.
fn read_credentials() -> Result<(String, String)> {
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let mut lines = stdin.lock();
    let mut read_line = |what: &str| -> Result<String> {
        let mut s = String::new();
        let n = lines
            .read_line(&mut s)
            .map_err(|e| CtlError::io(format!("read the {what}"), e))?;
        if n == 0 {
            return Err(CtlError::Invalid(format!(
                "login: no {what} given (stdin ended)"
            )));
        }
        Ok(s.trim_end_matches(['\n', '\r']).to_string())
    };
    if tty {
        prompt("Username: ")?;
    }
    let username = read_line("username")?;
    let password = if tty {
        prompt("Password: ")?;
        let echo = EchoOff::new();
        let p = read_line("password");
        drop(echo);
        eprintln!();
        p?
    } else {
        read_line("password")?
    };
    if username.is_empty() {
        return Err(CtlError::Invalid("login: the username is empty".into()));
    }
    Ok((username, password))
}

fn prompt(text: &str) -> Result<()> {
    let mut err = std::io::stderr();
    err.write_all(text.as_bytes())
        .and_then(|_| err.flush())
        .map_err(|e| CtlError::io("write the prompt", e))
}

/// Turns the terminal's echo off on stdin until dropped.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> EchoOff {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios we own; a failure leaves echo on.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut t) != 0 {
                return EchoOff(None);
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t) != 0 {
                return EchoOff(None);
            }
            EchoOff(Some(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            // SAFETY: restores the settings read in `new`.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, t);
            }
        }
    }
}

/// Writes `answer` to `path` (mode 0600) in its directory (mode 0700), replacing the file
/// whole.
fn save(path: &std::path::Path, answer: &[u8]) -> Result<()> {
    let dir = path.parent().expect("config path has a directory");
    let io = |what: &str, e| CtlError::io(format!("{what} {}", dir.display()), e);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io("create", e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io("set the mode of", e))?;
    let tmp = dir.join(".config.json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(answer)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        CtlError::io(format!("write {}", path.display()), e)
    })
}
