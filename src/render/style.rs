//! Color choice for everything printed: `--color`, `NO_COLOR` and whether stdout is a terminal.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::cli::ColorChoice;

static CHOICE: AtomicU8 = AtomicU8::new(0);

/// Records the user's `--color` choice; `anstream` then strips styles where they do not belong.
pub fn init(choice: ColorChoice) {
    let value = match choice {
        ColorChoice::Auto => 0,
        ColorChoice::Always => 1,
        ColorChoice::Never => 2,
    };
    CHOICE.store(value, Ordering::Relaxed);
    let anstream_choice = match choice {
        ColorChoice::Auto => anstream::ColorChoice::Auto,
        ColorChoice::Always => anstream::ColorChoice::Always,
        ColorChoice::Never => anstream::ColorChoice::Never,
    };
    anstream_choice.write_global();
}
