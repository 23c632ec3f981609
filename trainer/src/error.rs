//! The error type of the trainer library: every variant says what was expected, what was found
//! and where (file, tensor name, config key).

use std::path::PathBuf;

/// Errors from loading models, tokenizers, steering vectors and from running them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A JSON file is not valid JSON.
    #[error("{path}: not valid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        source: serde_json::Error,
    },
    /// A required key is missing from a configuration file.
    #[error("{path}: missing required key `{key}`")]
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A configuration value has the wrong type or an invalid value.
    #[error("{path}: key `{key}`: expected {expected}, found {found}")]
    InvalidValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What was expected.
        expected: String,
        /// What was found.
        found: String,
    },
    /// `config.json` names an architecture steerlab does not implement.
    #[error(
        "{path}: unknown architecture `{found}`; supported: {}",
        supported.join(", ")
    )]
    UnknownArchitecture {
        /// The config file.
        path: PathBuf,
        /// The name found in `architectures[0]`.
        found: String,
        /// The names steerlab supports.
        supported: Vec<&'static str>,
    },
    /// A safetensors file is malformed or truncated.
    #[error("{path}: invalid safetensors file: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor the model needs is in none of the weight files.
    #[error("{dir}: tensor `{name}` is missing from the weights")]
    MissingTensor {
        /// The model directory.
        dir: PathBuf,
        /// The tensor name.
        name: String,
    },
    /// A tensor has the wrong shape.
    #[error("{path}: tensor `{name}`: expected shape {expected:?}, found {found:?}")]
    TensorShape {
        /// The file holding the tensor.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// The expected shape.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor has a dtype that cannot be used.
    #[error("{path}: tensor `{name}`: expected a float dtype (f32, f16, bf16, f64), found {found}")]
    TensorDtype {
        /// The file holding the tensor.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// The dtype in the file.
        found: String,
    },
    /// The tokenizer files could not be loaded or used.
    #[error("{path}: tokenizer: {message}")]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A chat template was required, but the tokenizer has none.
    #[error(
        "{dir}: the tokenizer has no chat template (neither `chat_template` in tokenizer_config.json nor chat_template.jinja); use a plain template such as `qwen_math` or `r1`"
    )]
    MissingChatTemplate {
        /// The model directory.
        dir: PathBuf,
    },
    /// A chat template failed to compile or render.
    #[error("chat template: {0}")]
    Template(String),
    /// A steering-vector file does not fit the model or is malformed.
    #[error("{path}: {message}")]
    Steering {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A config file is malformed: unknown key, wrong type, or a value out of range.
    #[error("{path}: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong (names the key).
        message: String,
    },
    /// A training run directory cannot be resumed or written.
    #[error("{path}: {message}")]
    Run {
        /// The run directory or file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A data file (training set, benchmark) is missing or malformed.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// An argument is out of range or inconsistent.
    #[error("{0}")]
    InvalidArgument(String),
    /// The backend failed to execute or read back a tensor.
    #[error("backend: {0}")]
    Backend(String),
}

/// The result type of the trainer library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
