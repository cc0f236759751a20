//! The crate's one error type.

use std::path::PathBuf;

/// What can go wrong in peirce-torch. Messages name the file, tensor or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum TorchError {
    /// A file or folder could not be read or written.
    #[error("I/O error on `{path}`: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A JSON file (config, index, tokenizer config) is malformed.
    #[error("Malformed JSON in `{path}`: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A model configuration that cannot describe a working model.
    #[error("Invalid model config: {0}")]
    Config(String),
    /// A safetensors file that cannot be parsed.
    #[error("Malformed safetensors file `{path}`: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The checkpoint lacks a tensor the model needs.
    #[error("Checkpoint `{path}` has no tensor `{name}`")]
    MissingTensor {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// The tensor's Hugging Face name.
        name: String,
    },
    /// The checkpoint has a tensor the model does not know.
    #[error("Checkpoint `{path}` has unexpected tensor `{name}`")]
    UnexpectedTensor {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },
    /// A tensor whose shape or dtype does not fit the model.
    #[error("Tensor `{name}` in `{path}` has shape {found:?}, the model expects {expected:?}")]
    ShapeMismatch {
        /// The file holding the tensor.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The model's shape.
        expected: Vec<i64>,
        /// The file's shape.
        found: Vec<i64>,
    },
    /// A tensor stored with a dtype we cannot load.
    #[error("Tensor `{name}` in `{path}` has unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// The file holding the tensor.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The dtype as safetensors names it.
        dtype: String,
    },
    /// A tokenizer that cannot be loaded, built or used.
    #[error("Tokenizer error: {0}")]
    Tokenizer(String),
    /// Bad arguments to generation or training.
    #[error("Invalid argument: {0}")]
    Invalid(String),
    /// A process group ([`crate::dist`]) failed: its rendezvous, or a collective operation
    /// (a peer died, timed out or disagreed). The message names the rank and the operation.
    #[error("Distributed: {0}")]
    Dist(String),
    /// An error reported by libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// The crate's result type.
pub type Result<T, E = TorchError> = std::result::Result<T, E>;

/// Adds the path to an I/O error.
pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TorchError {
    let path = path.into();
    move |source| TorchError::Io { path, source }
}

/// Reads and parses a JSON file.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&bytes).map_err(|error| TorchError::Json {
        path: path.to_path_buf(),
        message: error.to_string(),
    })
}

/// Writes a value as pretty JSON with a trailing newline.
pub(crate) fn write_json<T: serde::Serialize>(path: &std::path::Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|error| TorchError::Json {
        path: path.to_path_buf(),
        message: error.to_string(),
    })?;
    bytes.push(b'\n');
    std::fs::write(path, bytes).map_err(io(path))
}

impl From<TorchError> for peirce_protocol::WorkerError {
    /// Bad files and parameters are the user's to fix (never retried); running out of
    /// device memory may pass (retried); anything else is a failure.
    fn from(error: TorchError) -> Self {
        use peirce_protocol::ErrorClass;
        let class = match &error {
            TorchError::Json { .. }
            | TorchError::Config(_)
            | TorchError::Safetensors { .. }
            | TorchError::MissingTensor { .. }
            | TorchError::UnexpectedTensor { .. }
            | TorchError::ShapeMismatch { .. }
            | TorchError::UnsupportedDtype { .. }
            | TorchError::Tokenizer(_)
            | TorchError::Invalid(_) => ErrorClass::BadInput,
            TorchError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorClass::BadInput
            }
            TorchError::Torch(error) if error.to_string().contains("out of memory") => {
                ErrorClass::Transient
            }
            _ => ErrorClass::Failed,
        };
        Self {
            class,
            message: error.to_string(),
        }
    }
}
