//! `cluster.toml` parsing and validation: any file content. Must never panic; a resolved
//! configuration must pass its own validation.
#![no_main]

use hybrid_cache::config::{Config, FileConfig, Flags};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = toml::from_str::<FileConfig>(text) else {
        return;
    };
    if let Ok(c) = Config::resolve(&Flags::default(), &|_| None, file) {
        c.validate().expect("a resolved config is valid");
        let budgets = hybrid_cache::config::l1_byte_budgets(&c.categories, c.l1_max_bytes);
        assert!(
            budgets.values().map(|b| u128::from(*b)).sum::<u128>()
                <= u128::from(c.l1_max_bytes) + budgets.len() as u128
        );
    }
});
