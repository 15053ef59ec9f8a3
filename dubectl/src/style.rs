//! Colour, only on a terminal and never with `NO_COLOR` (<https://no-color.org>).

use std::io::IsTerminal;

/// True when text written to stdout (or stderr) may carry colour.
pub fn enabled(stderr: bool) -> bool {
    let tty = if stderr {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Wraps `text` in an ANSI colour (30..=37) when `on`.
pub fn paint(on: bool, colour: u8, text: &str) -> String {
    if on {
        format!("\x1b[{colour}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// A stable colour for a name (for log prefixes).
pub fn colour_of(name: &str) -> u8 {
    const COLOURS: [u8; 6] = [32, 33, 34, 35, 36, 31];
    let sum: usize = name.bytes().map(usize::from).sum();
    COLOURS[sum % COLOURS.len()]
}
