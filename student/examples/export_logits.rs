//! Writes the logits didact computes for a checkpoint on fixed token ids, so
//! `scripts/check_transformers_load.py` can load the same checkpoint in
//! Hugging Face transformers and compare (the reverse of the parity test).
//!
//! `cargo run --release -p didact-student --example export_logits -- runs/default/base logits.json`

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, out] = args.as_slice() else {
        return Err("usage: export_logits <checkpoint dir> <out.json>".into());
    };
    let device = Default::default();
    let model = didact_student::checkpoint::load::<Flex>(std::path::Path::new(dir), &device)?;
    let vocab = model.config().vocab_size as i64;
    let ids: Vec<Vec<i64>> = (0..2)
        .map(|r| (0..9).map(|i| (7 + 13 * i + 31 * r) % vocab).collect())
        .collect();
    let flat: Vec<i64> = ids.iter().flatten().copied().collect();
    let x = Tensor::<Flex, 2, Int>::from_data(TensorData::new(flat, [2, 9]), &device);
    let logits = model.forward(x, None, None);
    let shape = logits.dims();
    let values = logits.into_data().to_vec::<f32>()?;
    let json = serde_json::json!({"input_ids": ids, "shape": shape, "logits": values});
    std::fs::write(out, serde_json::to_string(&json)?)?;
    Ok(())
}
