//! The fixture configs of `fixtures/configs/`, embedded at build time, one constant per file, and
//! the parsing every test does with them.

use uie_model::Config;

/// A small model with a behaviour sequence and every UIE module on (`tiny-uie.toml`).
pub const TINY_UIE: &str = include_str!("../../../fixtures/configs/tiny-uie.toml");

/// A small plain PLE model: two levels, specific and shared experts, a user and an item field,
/// two dense features, one tower with a hidden layer and one without (`tiny-ple.toml`).
pub const TINY_PLE: &str = include_str!("../../../fixtures/configs/tiny-ple.toml");

/// A small plain PLE model with Census-like fields and tasks (`tiny-census.toml`); uie-model's
/// config tests edit it line by line.
pub const TINY_CENSUS: &str = include_str!("../../../fixtures/configs/tiny-census.toml");

/// The model of the server tests: inputs `user_id` INT64 `[N]` and `dense` FP32 `[N, 1]`, output
/// `probs` `[N, 1]`, model name `signal_test` (`tiny-serve.toml`).
pub const TINY_SERVE: &str = include_str!("../../../fixtures/configs/tiny-serve.toml");

/// Parses and validates a config text; panics with the config error (a broken fixture).
pub fn config(text: &str) -> Config {
    Config::from_toml_str(text).unwrap_or_else(|e| panic!("test config: {e}"))
}

/// [`TINY_UIE`], parsed.
pub fn tiny_uie() -> Config {
    config(TINY_UIE)
}

/// [`TINY_PLE`], parsed.
pub fn tiny_ple() -> Config {
    config(TINY_PLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_is_a_valid_config_named_as_documented() {
        for (text, name) in [
            (TINY_UIE, "tiny_uie"),
            (TINY_PLE, "tiny_ple"),
            (TINY_CENSUS, "tiny"),
            (TINY_SERVE, "signal_test"),
        ] {
            assert_eq!(config(text).model.name, name);
        }
        assert!(tiny_uie().features.sequence.is_some());
        assert!(tiny_ple().features.sequence.is_none());
    }
}
