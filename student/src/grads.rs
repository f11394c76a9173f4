//! Global gradient-norm clipping. burn's own `GradientClipping::Norm` clips
//! each parameter tensor separately, which changes the direction of the
//! update; the usual recipe (and the one the trainers document) scales all
//! gradients together so that their joint L2 norm is at most `max_norm`.
//! The norm itself is a training metric.

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{ElementConversion, Tensor};

use crate::kernels::TrainBackend;
use crate::model::Llama;

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: f64,
}

impl<B: burn::tensor::backend::Backend> ModuleVisitor<B> for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B, D>(param.id) {
            let s: f64 = g.square().sum().into_scalar().elem();
            self.total += s;
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl<B: burn::tensor::backend::Backend> ModuleVisitor<B> for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.remove::<B, D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// The joint L2 norm of every parameter's gradient.
pub fn global_norm<B: TrainBackend>(model: &Llama<B>, grads: &GradientsParams) -> f64 {
    let mut visitor = SquaredNorm { grads, total: 0.0 };
    model.valid().visit(&mut visitor);
    visitor.total.sqrt()
}

/// Scales all gradients by one factor so that their joint norm is at most
/// `max_norm` (0 disables), and returns the norm before clipping.
pub fn clip_global_norm<B: TrainBackend>(
    model: &Llama<B>,
    grads: &mut GradientsParams,
    max_norm: f32,
) -> f64 {
    let norm = global_norm(model, grads);
    if max_norm > 0.0 && norm > max_norm as f64 {
        let mut visitor = Scale {
            grads,
            factor: max_norm as f64 / (norm + 1e-6),
        };
        model.valid().visit(&mut visitor);
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::init_random;
    use crate::config::LlamaConfig;
    use crate::sft::{Example, make_batch, masked_nll};
    use burn::backend::{Autodiff, Flex};

    type A = Autodiff<Flex>;

    #[test]
    fn clipping_scales_every_gradient_by_one_factor() {
        let device = Default::default();
        let model = init_random::<A>(&LlamaConfig::small(32, 16, 1, 2, 2), 5, &device).unwrap();
        let ex = Example {
            ids: vec![1, 2, 3, 30, 4],
            mask: vec![false, true, true, true, true],
        };
        let batch = make_batch::<A>(&[&ex], 64, 0, &device);
        let mut grads = GradientsParams::from_grads(masked_nll(&model, &batch).backward(), &model);
        let head = |g: &GradientsParams| {
            g.get::<Flex, 2>(model.lm_head.as_ref().unwrap().weight.id)
                .unwrap()
                .into_data()
                .to_vec::<f32>()
                .unwrap()
        };
        let embed = |g: &GradientsParams| {
            g.get::<Flex, 2>(model.embed_tokens.weight.id)
                .unwrap()
                .into_data()
                .to_vec::<f32>()
                .unwrap()
        };
        let (head_before, embed_before) = (head(&grads), embed(&grads));
        let norm = clip_global_norm(&model, &mut grads, 1e-3);
        assert!(norm > 1e-3, "the toy loss has a gradient larger than 1e-3");
        let after = global_norm(&model, &grads);
        assert!((after - 1e-3).abs() < 1e-6, "clipped norm {after}");
        // One factor for all tensors: the ratio is the same in each.
        let ratio = |a: &[f32], b: &[f32]| {
            let (i, _) = a
                .iter()
                .enumerate()
                .max_by(|x, y| x.1.abs().total_cmp(&y.1.abs()))
                .unwrap();
            b[i] / a[i]
        };
        let r_head = ratio(&head_before, &head(&grads));
        let r_embed = ratio(&embed_before, &embed(&grads));
        assert!((r_head - r_embed).abs() < 1e-4 * r_head.abs().max(1e-9));
        assert!((r_head as f64 - 1e-3 / norm).abs() < 1e-6);
    }
}
