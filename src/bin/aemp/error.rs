//! What can go wrong in an `aemp` command; `main` prints it as
//! `aemp: <error>`.

use aemp::config::ConfigError;
use aemp::{CalError, SendError, StartError};
use thiserror::Error;

/// An `aemp` command failed.
#[derive(Debug, Error)]
pub enum CliError {
    /// `aemp` without arguments (the help was printed above).
    #[error("usage: aemp command args... (see above)")]
    Usage,
    /// A command neither this binary nor the reference knows.
    #[error("{0}: no such aemp command (try aemp --help)")]
    NoSuchCommand(String),
    /// The one argument starting with `[` is JSON, but not an array.
    #[error("the argument list is not a JSON array")]
    ArgsNotAnArray,
    /// An argument starting with `[`, `{` or `"` is not JSON.
    #[error("argument {number}: invalid JSON: {source}")]
    ArgJson {
        /// The argument's position, from 1.
        number: usize,
        /// What the JSON parser said.
        source: serde_json::Error,
    },
    /// A command's argument is missing (what it is).
    #[error("{0} missing")]
    Missing(String),
    /// `showconfig` got a key without a value.
    #[error("showconfig: odd number of key/value arguments")]
    OddShowconfigArgs,
    /// The configuration file could not be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The command's node could not be started.
    #[error(transparent)]
    Start(#[from] StartError),
    /// A file named on the command line could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The `setcert` file holds no certificate.
    #[error("{0}: no certificate (PEM) in the file")]
    NoCertificate(String),
    /// The `setcert` file holds no private key.
    #[error("{0}: no private key (PEM) in the file")]
    NoPrivateKey(String),
    /// The `setcert` file cannot be used for TLS.
    #[error("{0}: {1}")]
    BadCert(String, aemp::wire::CertError),
    /// `gencert`: the key could not be made.
    #[error("gencert: {0}")]
    Key(#[from] rsa::Error),
    /// `gencert`: the key could not be written as PKCS#8.
    #[error("gencert: {0}")]
    Pkcs8(#[from] rsa::pkcs8::Error),
    /// `gencert`: the certificate could not be made.
    #[error("gencert: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A message could not be sent.
    #[error(transparent)]
    Send(#[from] SendError),
    /// A received message is not JSON values.
    #[error(transparent)]
    Decode(#[from] serde_json::Error),
    /// `snd` or `eval`: no answer in time.
    #[error("{command}: {target} did not answer within 5 s{hint}")]
    NoAnswer {
        /// The command.
        command: &'static str,
        /// The port or node asked.
        target: String,
        /// What to try (see `no_seeds_hint`), or nothing.
        hint: &'static str,
    },
    /// `snd`: the port was killed (its kil reason, as Perl prints it).
    #[error("snd: {port} is gone: {reason}")]
    Gone {
        /// The port.
        port: String,
        /// The kil reason.
        reason: String,
    },
    /// `cal`: the port died before replying (its kil reason, as Perl
    /// prints it).
    #[error("cal: {port} died: {reason}")]
    Died {
        /// The port.
        port: String,
        /// The kil reason.
        reason: String,
    },
    /// `cal`: no reply.
    #[error("cal: {source}{hint}")]
    Cal {
        /// Why.
        source: CalError,
        /// What to try (see `no_seeds_hint`), or nothing.
        hint: &'static str,
    },
    /// The command's node stopped before the command was done.
    #[error("{0}: node stopped")]
    NodeStopped(&'static str),
    /// `trace`: not every node answered in time.
    #[error("trace: no complete answer within 15 s{0}")]
    TraceTimeout(&'static str),
    /// `eval`: the error the remote node put in `$@` (with the rest of
    /// its answer, as Perl prints it).
    #[error("{0}")]
    Remote(String),
}

/// What every command returns.
pub type CliResult<T> = Result<T, CliError>;
