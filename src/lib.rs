//! aemp: AEMP, the message-passing protocol of Perl's AnyEvent::MP, in Rust.
#![warn(missing_docs)]

pub mod wire;
