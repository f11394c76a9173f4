//! The critic model. In `head` mode it is the student with its embedding
//! and bottom layers frozen: only copies of the top `head_layers` layers,
//! the final norm and the LM head learn (with tied embeddings the LM head
//! is the frozen embedding). Frozen parameters are not tracked by autodiff,
//! so the backward pass stops at the head. The critic is saved as a whole
//! Llama checkpoint, so it generates with the same code as the student.

use burn::module::Module;
use didact_student::Llama;
use didact_student::kernels::Kernels;

/// Freezes everything below the top `head_layers` layers.
pub fn freeze_trunk<B: Kernels>(mut model: Llama<B>, head_layers: usize) -> Llama<B> {
    let trunk = model.layers.len().saturating_sub(head_layers);
    model.embed_tokens = model.embed_tokens.no_grad();
    model.layers = model
        .layers
        .into_iter()
        .enumerate()
        .map(|(i, layer)| if i < trunk { layer.no_grad() } else { layer })
        .collect();
    model
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use didact_student::LlamaConfig;
    use didact_student::checkpoint::init_random;
    use didact_student::sft::{Example, make_batch, masked_nll};

    type A = Autodiff<Flex>;

    #[test]
    fn only_the_head_learns() {
        let device = Default::default();
        let model = init_random::<A>(&LlamaConfig::small(32, 16, 3, 2, 2), 5, &device).unwrap();
        let critic = freeze_trunk(model, 1);
        let ex = Example {
            ids: vec![1, 2, 3, 30, 4],
            mask: vec![false, true, true, true, true],
        };
        let batch = make_batch::<A>(&[&ex], 64, 0, &device);
        let grads = masked_nll(&critic, &batch).backward();
        assert!(critic.embed_tokens.weight.grad(&grads).is_none());
        for layer in &critic.layers[..2] {
            assert!(layer.mlp.up_proj.weight.grad(&grads).is_none());
        }
        assert!(critic.layers[2].mlp.up_proj.weight.grad(&grads).is_some());
        assert!(critic.norm.gamma.grad(&grads).is_some());
        assert!(
            critic
                .lm_head
                .as_ref()
                .unwrap()
                .weight
                .grad(&grads)
                .is_some()
        );
    }
}
