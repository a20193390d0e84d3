//! `aemp`: the AnyEvent::MP utility, for aemp nodes and the configuration
//! file it shares with the Perl tool of the same name.
//!
//! Commands chain until the arguments run out
//! (`aemp gensecret profile xyzzy binds 4040,4041 nodeid anon/`); every
//! `set<key>` also works as plain `<key>`. Arguments follow the
//! reference's JSON rule (see `args.rs`).

/// `print!` that ignores a closed stdout (`aemp … | head`).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

/// `println!` that ignores a closed stdout.
macro_rules! outln {
    () => { out!("\n") };
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

mod args;
mod cert;
mod configure;
mod error;
mod net;
mod run;
mod services;

use std::process::ExitCode;

use clap::Command;

use crate::error::{CliError, CliResult};

/// The commands, as the reference's synopsis lists them.
const COMMANDS: &[(&str, &str)] = &[
    ("snd", "<port> <arg...>: send a message"),
    ("mon", "<port>: wait till port is killed"),
    ("cal", "<port> <arg...>: send message, append reply"),
    (
        "eval",
        "<node> <expr...>: evaluate expression (an aemp node refuses)",
    ),
    ("shell", "[<node>]: run an interactive shell"),
    (
        "trace",
        "<node> [--dot]: trace the network topology (--dot: as a Graphviz graph)",
    ),
    ("run", "[profile] [key value]...: run a node"),
    (
        "restart",
        "<node>: restart a node if running under watchdog (an aemp node refuses)",
    ),
    ("setnodeid", "<nodeid>: configure the real node id"),
    ("delnodeid", "reset node id to default (= inherit)"),
    ("gensecret", "generate a random shared secret"),
    ("setsecret", "<secret>: set the shared secret"),
    ("delsecret", "remove the secret (= inherit)"),
    ("gencert", "generate a random certificate"),
    (
        "setcert",
        "<file>: set a certificate (key.pem + certificate.pem)",
    ),
    ("delcert", "remove certificate (= inherit)"),
    ("setseeds", "<host:port>,...: set seeds"),
    ("delseeds", "clear all seeds (= inherit)"),
    ("addseed", "<host:port>: add a seed"),
    ("delseed", "<host:port>: remove seed"),
    ("setbinds", "<host:port>,...: set binds"),
    ("delbinds", "clear all binds (= inherit)"),
    ("addbind", "<host:port>: add a bind address"),
    ("delbind", "<host:port>: remove a bind address"),
    ("setservices", "initfunc,...: set service functions"),
    ("delservices", "clear all services (= inherit)"),
    ("addservice", "<initfunc>: add an instance of a service"),
    ("delservice", "<initfunc>: delete one instance of a service"),
    (
        "profile",
        "<name> <command>...: apply command to profile only",
    ),
    ("setparent", "<name>: specify a parent profile"),
    ("delparent", "clear parent again"),
    ("delprofile", "<name>: eradicate the named profile"),
    ("showprofile", "<name>: display given profile"),
    ("showconfig", "<name> ...: display effective config"),
    ("setmonitor_timeout", "<seconds>"),
    ("setconnect_interval", "<seconds>"),
    ("setframing_format", "[array]"),
    ("setauth_offer", "[array]"),
    ("setauth_accept", "[array]"),
    ("setautocork", "<boolean>"),
    ("setnodelay", "<boolean>"),
];

fn help_command() -> Command {
    let services: String = services::BUILTIN
        .iter()
        .map(|(name, what)| format!("  {name}: {what}\n"))
        .collect();
    let after = format!(
        "Commands chain until the arguments run out, e.g.\n  \
         aemp gensecret profile xyzzy binds 4040,4041 nodeid anon/\n\
         Every set<key> also works as <key>, every set<key> has a del<key>.\n\
         One argument starting with '[' replaces all arguments with the JSON array;\n\
         otherwise arguments starting with '[', '{{' or '\"' are JSON.\n\n\
         Configuration file: $PERL_ANYEVENT_MP_RC, else ~/.perl-anyevent-mp\n\
         Logging of `aemp run`: $AEMP_LOG (or $RUST_LOG), default info\n\n\
         Services built into this binary:\n{services}\
         Services of every aemp node:\n  \
         [\"AnyEvent::MP::LogCatcher::catch\", level]: print the log messages of level <= level \
         of every connected node on stderr (e.g. services '[[\"AnyEvent::MP::LogCatcher::catch\",9]]')\n"
    );
    let mut cmd = Command::new("aemp")
        .about("AnyEvent::MP utility, for aemp and Perl nodes")
        .override_usage("aemp command args...")
        .after_help(after);
    for (name, about) in COMMANDS {
        cmd = cmd.subcommand(
            Command::new(*name).about(*about).arg(
                clap::Arg::new("args")
                    .num_args(0..)
                    .allow_hyphen_values(true),
            ),
        );
    }
    cmd
}

/// `aemp`, `aemp --help`, `aemp help [cmd]`, `aemp <cmd> --help`.
fn help_requested(raw: &[String]) -> Option<Option<String>> {
    let is_help = |s: &str| s == "--help" || s == "-h";
    match raw {
        [first, ..] if is_help(first) => Some(None),
        [first, rest @ ..] if first == "help" => Some(rest.first().cloned()),
        [first, second, ..] if is_help(second) && !first.starts_with('[') => {
            Some(Some(first.clone()))
        }
        _ => None,
    }
}

fn print_help(topic: Option<String>) {
    let mut cmd = help_command();
    let plain = topic.as_deref().map(|t| {
        // the set-less alias shows the set command's help
        if cmd.find_subcommand(t).is_none() && cmd.find_subcommand(format!("set{t}")).is_some() {
            format!("set{t}")
        } else {
            t.to_owned()
        }
    });
    // a closed stdout is not an error worth reporting
    let _ = match plain.as_deref().and_then(|t| cmd.find_subcommand_mut(t)) {
        Some(sub) => sub.print_help(),
        None => cmd.print_long_help(),
    };
    outln!();
}

fn init_logging(default: &str) {
    let filter = std::env::var("AEMP_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default.to_owned());
    // the stderr filter is the fmt layer's own, so log catchers
    // (`aemp::logcatcher`) get their level whatever it is
    use tracing_subscriber::prelude::*;
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(tracing_subscriber::EnvFilter::new(filter));
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(aemp::logcatcher::layer())
        .try_init();
}

fn real_main(raw: Vec<String>) -> CliResult<()> {
    if raw.is_empty() {
        print_help(None);
        return Err(CliError::Usage);
    }
    if let Some(topic) = help_requested(&raw) {
        print_help(topic);
        return Ok(());
    }
    let mut args = args::decode(raw)?;
    if args.front().is_some_and(|v| v == "run") {
        init_logging("info");
        args.pop_front();
        return run::run(args.into_iter().collect());
    }
    init_logging("error");
    let mut session = configure::Session::load()?;
    let mut chain = || -> CliResult<()> {
        while let Some(cmd) = args.pop_front() {
            let name = args::perl_text(&cmd);
            let handled = session.command(&name, &mut args)?
                || net::command(&session.file, &name, &mut args)?
                // every set<key> also works as <key>
                || session.command(&format!("set{name}"), &mut args)?;
            if !handled {
                return Err(CliError::NoSuchCommand(name));
            }
        }
        Ok(())
    };
    let result = chain();
    // what the chain did up to an error is saved, as the reference saves
    // at exit
    session.save_if_dirty()?;
    result
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    match real_main(raw) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aemp: {e}");
            ExitCode::FAILURE
        }
    }
}
