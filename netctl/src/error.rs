//! netctl's errors and the exit codes they map to (Contiv's, reference §3.1).

use model::ClientError;

/// Exit codes, as Contiv's netctl had them.
pub mod exit {
    pub const OK: u8 = 0;
    /// Bad usage: a bad flag, argument or flag value.
    pub const USAGE: u8 = 1;
    /// The request could not be made or answered: no netmaster, unreadable answer.
    pub const REQUEST: u8 = 2;
    /// The netmaster refused the request.
    pub const INVALID: u8 = 3;
    /// Reading or writing local files or the terminal failed.
    pub const IO: u8 = 4;
}

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Bad usage found after parsing; printed with the usage of the command at `path`.
    #[error("{message}")]
    Usage {
        path: &'static [&'static str],
        message: String,
    },
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The netmaster answered something this netctl cannot read.
    #[error("read answer of netmaster: {0}")]
    Decode(String),
    /// A request that makes no sense, refused before it is sent.
    #[error("{0}")]
    Invalid(String),
    /// A local I/O failure; `context` names the step ("write to stdout").
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl CtlError {
    pub fn usage(path: &'static [&'static str], message: impl Into<String>) -> Self {
        CtlError::Usage {
            path,
            message: message.into(),
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        CtlError::Io {
            context: context.into(),
            source,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage { .. } => exit::USAGE,
            CtlError::Client(ClientError::BadUrl { .. }) => exit::USAGE,
            CtlError::Client(ClientError::Api { .. }) | CtlError::Invalid(_) => exit::INVALID,
            CtlError::Client(ClientError::Unreachable { .. })
            | CtlError::Client(ClientError::Decode { .. })
            | CtlError::Client(ClientError::Tls { .. })
            | CtlError::Client(ClientError::TlsConfig(_))
            | CtlError::Decode(_) => exit::REQUEST,
            CtlError::Io { .. } => exit::IO,
        }
    }

    /// A closed pipe on stdout (`netctl net ls | head -1`) is reported by the exit code only.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CtlError::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

pub type Result<T, E = CtlError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_contiv() {
        let api = CtlError::from(ClientError::Api {
            status: 409,
            message: "in use".into(),
        });
        assert_eq!(api.exit_code(), 3);
        assert_eq!(api.to_string(), "in use");
        let down = CtlError::from(ClientError::Unreachable {
            url: "http://127.0.0.1:9999".into(),
            reason: "connection refused".into(),
        });
        assert_eq!(down.exit_code(), 2);
        assert_eq!(
            down.to_string(),
            "cannot reach netmaster at http://127.0.0.1:9999: connection refused (is netmaster running? set --netmaster or NETMASTER)"
        );
        assert_eq!(CtlError::usage(&["tenant"], "x").exit_code(), 1);
        let io = CtlError::io(
            "write to stdout",
            std::io::Error::from(std::io::ErrorKind::BrokenPipe),
        );
        assert_eq!(io.exit_code(), 4);
        assert!(io.is_broken_pipe());
    }
}
