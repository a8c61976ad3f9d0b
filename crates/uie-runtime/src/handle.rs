//! Hot reload: [`ModelHandle`] holds the model being served and swaps in a new model file
//! atomically while requests run.
//!
//! Readers take the current [`Model`] with [`ModelHandle::current`] (an `Arc` clone under a read
//! lock held for a few nanoseconds) and run on it without any lock, so a request always runs
//! whole on one model. [`ModelHandle::reload`] loads, optimises and checks the new file fully
//! BEFORE taking the write lock; if anything fails, the error comes back and the old model keeps
//! serving.
//!
//! ```no_run
//! use uie_runtime::{Batch, ModelHandle};
//! # fn main() -> Result<(), uie_runtime::RuntimeError> {
//! let handle = ModelHandle::load("model.onnx".as_ref())?;
//! let served = handle.clone(); // give clones to worker threads
//! std::thread::spawn(move || {
//!     let model = served.current(); // one model for the whole request
//!     let batch = Batch::new().build(model.schema()); // features elided
//!     let _ = batch.map(|b| model.predict(&b));
//! });
//! // Later, with new memory tables compiled into model-v2.onnx:
//! if let Err(e) = handle.reload("model-v2.onnx".as_ref()) {
//!     eprintln!("kept the old model: {e}");
//! }
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use crate::engine::EngineOptions;
use crate::error::RuntimeError;
use uie_model::RawBatch;

use crate::model::{Model, Predictions};

#[derive(Debug)]
struct Slot {
    model: Model,
    path: Option<PathBuf>,
    generation: u64,
}

/// A shared, hot-reloadable [`Model`]. Cheap to clone: clones see the same model and the same
/// reloads.
#[derive(Debug, Clone)]
pub struct ModelHandle {
    slot: Arc<RwLock<Arc<Slot>>>,
    opts: EngineOptions,
}

impl ModelHandle {
    /// Wraps a loaded model (generation 0, no path).
    pub fn new(model: Model) -> ModelHandle {
        ModelHandle::with_slot(model, None, EngineOptions::default())
    }

    /// Loads and optimises a model file.
    pub fn load(path: &Path) -> Result<ModelHandle, RuntimeError> {
        ModelHandle::load_with(path, EngineOptions::default())
    }

    /// Loads a model file with explicit engine options; reloads use the same options.
    pub fn load_with(path: &Path, opts: EngineOptions) -> Result<ModelHandle, RuntimeError> {
        let model = Model::load_with(path, opts)?;
        Ok(ModelHandle::with_slot(
            model,
            Some(path.to_path_buf()),
            opts,
        ))
    }

    fn with_slot(model: Model, path: Option<PathBuf>, opts: EngineOptions) -> ModelHandle {
        ModelHandle {
            slot: Arc::new(RwLock::new(Arc::new(Slot {
                model,
                path,
                generation: 0,
            }))),
            opts,
        }
    }

    fn slot(&self) -> Arc<Slot> {
        // A poisoned lock only means a panic while holding it; the Arc inside is still whole.
        Arc::clone(&self.slot.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The model serving now. Hold it for one request: a reload does not change it.
    pub fn current(&self) -> Model {
        self.slot().model.clone()
    }

    /// How many reloads have succeeded (0 for the first model).
    pub fn generation(&self) -> u64 {
        self.slot().generation
    }

    /// The file the current model was loaded from, if any.
    pub fn path(&self) -> Option<PathBuf> {
        self.slot().path.clone()
    }

    /// Predicts on the current model.
    pub fn predict(&self, batch: &RawBatch) -> Result<Predictions, RuntimeError> {
        self.current().predict(batch)
    }

    /// Loads `path` fully (tract load, optimisation, schema check) and then swaps it in
    /// atomically; returns the new generation. On any error the old model keeps serving.
    /// Requests already running finish on the model they started with.
    pub fn reload(&self, path: &Path) -> Result<u64, RuntimeError> {
        let model = Model::load_with(path, self.opts)?;
        Ok(self.swap(model, Some(path.to_path_buf())))
    }

    /// Swaps in an already loaded model; returns the new generation.
    pub fn replace(&self, model: Model) -> u64 {
        self.swap(model, None)
    }

    fn swap(&self, model: Model, path: Option<PathBuf>) -> u64 {
        let mut guard = self.slot.write().unwrap_or_else(PoisonError::into_inner);
        let generation = guard.generation + 1;
        *guard = Arc::new(Slot {
            model,
            path,
            generation,
        });
        generation
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}

    #[test]
    fn model_and_handle_are_send_sync_and_clone() {
        assert_send_sync::<Model>();
        assert_send_sync::<ModelHandle>();
        assert_send_sync::<crate::Engine>();
    }

    #[test]
    fn reload_of_a_missing_file_is_an_error() {
        let err = Model::load(Path::new("/nonexistent/model.onnx")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/model.onnx"), "{err}");
    }
}
