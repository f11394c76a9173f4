//! Resumable training checkpoints shared by the trainers: model weights in
//! Hugging Face layout, the optimizer state, the trainer's own state as JSON,
//! and whatever extra files a trainer keeps (rollout rows). A checkpoint is
//! built in a temporary directory and swapped in, so the directory always
//! holds a complete one.

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::checkpoint;
use crate::error::{Result, StudentError};
use crate::kernels::TrainBackend;
use crate::model::Llama;

const STATE_FILE: &str = "trainer_state.json";
const OPTIMIZER_BASE: &str = "optimizer";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StudentError {
    let path = path.to_path_buf();
    move |source| StudentError::Io { path, source }
}

/// Writes model, optimizer and trainer state into `dir`; `extra` adds files
/// to the temporary directory before the swap.
pub fn save<B, O, S>(
    dir: &Path,
    model: &Llama<B>,
    optim: &O,
    state: &S,
    extra: &dyn Fn(&Path) -> Result<()>,
) -> Result<()>
where
    B: TrainBackend,
    O: Optimizer<Llama<B>, B>,
    S: Serialize,
{
    let tmp = dir.with_extension("tmp");
    let old = dir.with_extension("old");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    checkpoint::save(&model.valid(), &tmp)?;
    BinFileRecorder::<FullPrecisionSettings>::new()
        .record(optim.to_record(), tmp.join(OPTIMIZER_BASE))
        .map_err(|e| StudentError::Training(format!("saving optimizer state: {e}")))?;
    extra(&tmp)?;
    let json = serde_json::to_vec_pretty(state).expect("state serialises");
    didact_data::atomic::write(&tmp.join(STATE_FILE), &json)?;
    let _ = std::fs::remove_dir_all(&old);
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(io(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(io(dir))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// The trainer state saved in `dir`, if there is a checkpoint there. Also
/// completes a swap that an interruption left half done.
pub fn read_state<S: DeserializeOwned>(dir: &Path) -> Result<Option<S>> {
    let previous = dir.with_extension("old");
    if !dir.exists() && previous.join(STATE_FILE).exists() {
        std::fs::rename(&previous, dir).map_err(io(dir))?;
    }
    let path: PathBuf = dir.join(STATE_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StudentError::Checkpoint {
            path,
            reason: e.to_string(),
        })
}

/// Model weights and optimizer state of the checkpoint in `dir`.
pub fn load<B, O>(dir: &Path, optim: O, device: &B::Device) -> Result<(Llama<B>, O)>
where
    B: TrainBackend,
    O: Optimizer<Llama<B>, B>,
{
    let model = checkpoint::load::<B>(dir, device)?;
    let record = BinFileRecorder::<FullPrecisionSettings>::new()
        .load(dir.join(OPTIMIZER_BASE), device)
        .map_err(|e| StudentError::Checkpoint {
            path: dir.join(OPTIMIZER_BASE),
            reason: format!("optimizer state: {e}"),
        })?;
    Ok((model, optim.load_record(record)))
}
