//! Real weights from a safetensors file: one `n × k` tensor per layer, named as quantgrid
//! names the layer, widened to f32 for the quantizer and the references.

use quantgrid_matrix::workload::Layer;
use safetensors::{Dtype, SafeTensors};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read weights file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a safetensors file: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path} has no tensor `{name}` ({}); it has {available}", dims(shape))]
    Missing {
        path: PathBuf,
        name: String,
        shape: Vec<usize>,
        available: String,
    },
    #[error("tensor `{name}` in {path} is {found:?}, quantgrid needs {shape:?}")]
    Shape {
        path: PathBuf,
        name: String,
        found: Vec<usize>,
        shape: Vec<usize>,
    },
    #[error("tensor `{name}` in {path} is {dtype}; quantgrid reads F32, F16 and BF16")]
    Dtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },
}

/// `[768, 3072]` as `768 × 3072`.
fn dims(shape: &[usize]) -> String {
    let d: Vec<String> = shape.iter().map(usize::to_string).collect();
    d.join(" × ")
}

/// A safetensors file held in memory.
#[derive(Debug)]
pub struct WeightsFile {
    path: PathBuf,
    bytes: Vec<u8>,
    sha256: String,
}

impl WeightsFile {
    pub fn open(path: &Path) -> Result<WeightsFile, WeightsError> {
        let bytes = std::fs::read(path).map_err(|source| WeightsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        use sha2::Digest;
        let sha256 = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let file = WeightsFile {
            path: path.to_path_buf(),
            bytes,
            sha256,
        };
        file.tensors()?;
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SHA-256 of the file's bytes: which tensors were measured, whatever the path holds later.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    fn tensors(&self) -> Result<SafeTensors<'_>, WeightsError> {
        SafeTensors::deserialize(&self.bytes).map_err(|e| WeightsError::Format {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }

    /// The shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>, WeightsError> {
        let tensors = self.tensors()?;
        match tensors.tensor(name) {
            Ok(t) => Ok(t.shape().to_vec()),
            // the lookup that names what the file has instead
            Err(_) => self.tensor(name, &[]).map(|_| Vec::new()),
        }
    }

    /// The layer's weights, row-major `n × k`, as f32.
    pub fn layer(&self, layer: &Layer) -> Result<Vec<f32>, WeightsError> {
        self.tensor(&layer.name, &[layer.n as usize, layer.k as usize])
    }

    /// Tensor `name`, which must have `shape`, row-major as f32.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, WeightsError> {
        let tensors = self.tensors()?;
        let t = tensors.tensor(name).map_err(|_| {
            let mut names = tensors.names();
            names.sort();
            let shown: Vec<String> = names.iter().take(8).map(|n| format!("`{n}`")).collect();
            let more = names.len().saturating_sub(shown.len());
            WeightsError::Missing {
                path: self.path.clone(),
                name: name.to_string(),
                shape: shape.to_vec(),
                available: if names.is_empty() {
                    "no tensors".into()
                } else if more > 0 {
                    format!("{} and {more} more", shown.join(", "))
                } else {
                    shown.join(", ")
                },
            }
        })?;
        if t.shape() != shape {
            return Err(WeightsError::Shape {
                path: self.path.clone(),
                name: name.to_string(),
                found: t.shape().to_vec(),
                shape: shape.to_vec(),
            });
        }
        let data = t.data();
        let values: Vec<f32> = match t.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(WeightsError::Dtype {
                    path: self.path.clone(),
                    name: name.to_string(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quantgrid_matrix::workload::Role;
    use safetensors::tensor::TensorView;

    fn layer(name: &str, n: u32, k: u32) -> Layer {
        Layer {
            name: name.into(),
            role: Role::Ffn,
            m: 1,
            k,
            n,
        }
    }

    #[test]
    fn reads_f32_f16_and_bf16_and_names_what_is_missing() {
        let f32s: Vec<u8> = [1.5f32, -2.0, 0.25, 4.0, 0.0, 8.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let f16s: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        let bf16s: Vec<u8> = [0.5f32, 3.0]
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect();
        let views = vec![
            (
                "a",
                TensorView::new(Dtype::F32, vec![2, 3], &f32s).expect("view"),
            ),
            (
                "b",
                TensorView::new(Dtype::F16, vec![1, 2], &f16s).expect("view"),
            ),
            (
                "c",
                TensorView::new(Dtype::BF16, vec![2, 1], &bf16s).expect("view"),
            ),
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.safetensors");
        safetensors::serialize_to_file(views, None, &path).expect("write");
        let file = WeightsFile::open(&path).expect("open");
        assert_eq!(file.sha256().len(), 64);
        assert_eq!(
            file.layer(&layer("a", 2, 3)).expect("a"),
            vec![1.5, -2.0, 0.25, 4.0, 0.0, 8.0]
        );
        assert_eq!(file.layer(&layer("b", 1, 2)).expect("b"), vec![1.5, -2.0]);
        assert_eq!(file.layer(&layer("c", 2, 1)).expect("c"), vec![0.5, 3.0]);
        let missing = file
            .layer(&layer("bert.0.attn.q", 768, 768))
            .expect_err("missing");
        assert!(
            missing
                .to_string()
                .contains("no tensor `bert.0.attn.q` (768 × 768); it has `a`, `b`, `c`"),
            "{missing}"
        );
        let shape = file.layer(&layer("a", 3, 2)).expect_err("shape");
        assert!(shape.to_string().contains("needs [3, 2]"), "{shape}");
        std::fs::write(&path, b"not safetensors").expect("write");
        assert!(matches!(
            WeightsFile::open(&path),
            Err(WeightsError::Format { .. })
        ));
    }
}
