//! Messages on standard error through `tracing`: `-q` errors only, the default warnings,
//! `-v` info, `-vv` debug (and the netlink crates' records, which they log at trace),
//! `-vvv` everything; `RUST_LOG` (`debug`, `sp_ovsdb=trace,warn`) decides instead when
//! set. The `log` records of the crates that use `log` (netlink-proto, netlink-sys,
//! rtnetlink) are bridged in (tracing-log). Each line has a UTC timestamp when standard
//! error is not a terminal (a file, a pipe, the journal reading a service's output).

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;
use tracing_log::AsLog;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

use crate::command::Common;

/// The crates whose `log` records `-vv` shows in full.
const NETLINK_CRATES: [&str; 5] = [
    "netlink_proto",
    "netlink_sys",
    "rtnetlink",
    "netlink_packet_core",
    "netlink_packet_route",
];

/// The filter the options choose.
fn filter(common: &Common) -> Targets {
    let level = match (common.quiet, common.verbose) {
        (true, _) => LevelFilter::ERROR,
        (false, 0) => LevelFilter::WARN,
        (false, 1) => LevelFilter::INFO,
        (false, 2) => LevelFilter::DEBUG,
        (false, _) => LevelFilter::TRACE,
    };
    let targets = Targets::new().with_default(level);
    match common.verbose {
        2 if !common.quiet => targets.with_targets(NETLINK_CRATES.map(|c| (c, LevelFilter::TRACE))),
        _ => targets,
    }
}

/// The most verbose level any target shows. (The subscriber's own hint is TRACE: fmt's
/// filter below is opened wide so that `filter` alone decides.)
fn most_shown(filter: &Targets) -> LevelFilter {
    let levels = filter.iter().map(|(_, level)| level);
    levels
        .chain(filter.default_level())
        .max()
        .unwrap_or(LevelFilter::OFF)
}

/// Sets up the messages of this process (once, first thing after parsing).
pub fn init(common: &Common) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => s.parse::<Targets>().unwrap_or_else(|e| {
            crate::errln!("RUST_LOG={s:?} ignored: {e}");
            filter(common)
        }),
        _ => filter(common),
    };
    let most = most_shown(&filter);
    let timestamps = !std::io::stderr().is_terminal();
    // The filter decides; fmt's own (INFO by default) lets everything through.
    let fmt = tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_writer(std::io::stderr)
        .with_ansi(!timestamps);
    let subscriber: Box<dyn tracing::Subscriber + Send + Sync> = match timestamps {
        true => Box::new(fmt.finish().with(filter)),
        false => Box::new(fmt.without_time().finish().with(filter)),
    };
    if tracing::subscriber::set_global_default(subscriber).is_ok() {
        // log's records are made only up to the level something will show: the
        // netlink crates log every message at debug and trace, thousands in an apply.
        let _ = tracing_log::LogTracer::builder()
            .with_max_level(most.as_log())
            .init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled(f: &Targets, target: &str, level: tracing::Level) -> bool {
        f.would_enable(target, &level)
    }

    #[test]
    fn the_options_choose_the_level() {
        use tracing::Level;
        let c = |quiet, verbose| Common {
            json: false,
            quiet,
            verbose,
        };
        let quiet = filter(&c(true, 0));
        assert!(enabled(&quiet, "sp_loopvg", Level::ERROR));
        assert!(!enabled(&quiet, "sp_loopvg", Level::WARN));
        let default = filter(&c(false, 0));
        assert!(enabled(&default, "sp_loopvg", Level::WARN));
        assert!(!enabled(&default, "sp_loopvg", Level::INFO));
        assert!(enabled(&filter(&c(false, 1)), "x", Level::INFO));
        let debug = filter(&c(false, 2));
        assert!(enabled(&debug, "sp_ovsdb", Level::DEBUG));
        assert!(!enabled(&debug, "sp_ovsdb", Level::TRACE));
        assert!(enabled(&debug, "netlink_proto::framed", Level::TRACE));
        assert!(enabled(&filter(&c(false, 3)), "sp_ovsdb", Level::TRACE));
        // log's records (the netlink crates') are made only as far as a target shows.
        assert_eq!(most_shown(&quiet), LevelFilter::ERROR);
        assert_eq!(most_shown(&default), LevelFilter::WARN);
        assert_eq!(most_shown(&debug), LevelFilter::TRACE);
        assert_eq!(
            most_shown(&"sp_ovsdb=debug,warn".parse().unwrap()),
            LevelFilter::DEBUG
        );
    }
}
