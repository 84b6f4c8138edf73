//! Environments (`--environment`): `production` keeps its data directly in the data directory
//! (the layout from before environments existed); any other environment, e.g. `integration`,
//! lives in `<data-dir>/environments/<name>` with its own database, signing keys and issuer.

use std::path::{Path, PathBuf};

use ekko_connect::tokens::DEFAULT_ENVIRONMENT;

/// An environment name: 1 to 32 characters among `a-z`, `0-9` and `-`.
pub fn parse_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "'{s}' is not an environment name (1 to 32 of a-z, 0-9, '-'; e.g. production, integration)"
        ))
    }
}

/// The data directory of `environment` under `base`.
pub fn data_dir(base: &Path, environment: &str) -> PathBuf {
    if environment == DEFAULT_ENVIRONMENT {
        base.to_path_buf()
    } else {
        base.join("environments").join(environment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_keeps_the_plain_layout_and_others_get_a_subdirectory() {
        assert_eq!(data_dir(Path::new("/d"), "production"), Path::new("/d"));
        assert_eq!(
            data_dir(Path::new("/d"), "integration"),
            Path::new("/d/environments/integration")
        );
        assert!(parse_name("integration").is_ok());
        for bad in ["", "../x", "Prod", "a/b"] {
            assert!(parse_name(bad).is_err(), "{bad}");
        }
    }
}
