//! The kernels under autodiff: each call is one node of the graph, whose
//! backward step calls the inner backend's gradient kernel, instead of the
//! dozen nodes (and saved intermediates) of the composed version.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::ops::FloatTensor;

use super::{Kernels, KeyMask};

/// Hands each gradient to its parent, where the parent is tracked.
fn register<B: Kernels, const N: usize>(
    ops: Ops<impl Clone, N>,
    grads: &mut Gradients,
    parent_grads: [FloatTensor<B>; N],
) {
    for (parent, grad) in ops.parents.into_iter().zip(parent_grads) {
        if let Some(node) = parent {
            grads.register::<B>(node.id, grad);
        }
    }
}

#[derive(Debug)]
struct AttentionGrad;

impl<B: Kernels> Backward<B, 3> for AttentionGrad {
    /// q, k, v and the attention probabilities.
    type State = (
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
        FloatTensor<B>,
    );

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (q, k, v, probs) = ops.state.clone();
        register::<B, 3>(ops, grads, B::attention_backward(q, k, v, probs, grad));
    }
}

#[derive(Debug)]
struct DenseGrad;

impl<B: Kernels> Backward<B, 2> for DenseGrad {
    /// The input and the weight.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight) = ops.state.clone();
        let (dx, dweight, _) = B::dense_backward(x, weight, grad, false);
        register::<B, 2>(ops, grads, [dx, dweight]);
    }
}

#[derive(Debug)]
struct DenseBiasGrad;

impl<B: Kernels> Backward<B, 3> for DenseBiasGrad {
    /// The input and the weight.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight) = ops.state.clone();
        let (dx, dweight, dbias) = B::dense_backward(x, weight, grad, true);
        let dbias = dbias.expect("dense_backward returns the bias gradient when asked");
        register::<B, 3>(ops, grads, [dx, dweight, dbias]);
    }
}

#[derive(Debug)]
struct RopeGrad;

impl<B: Kernels> Backward<B, 1> for RopeGrad {
    /// The cosines and sines of the rotation.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (cos, sin) = ops.state.clone();
        // The inverse rotation: the same angles, negated.
        let dx = B::rope(grad, cos, B::float_neg(sin));
        register::<B, 1>(ops, grads, [dx]);
    }
}

#[derive(Debug)]
struct RmsNormGrad;

impl<B: Kernels> Backward<B, 2> for RmsNormGrad {
    /// The input, the weight and epsilon.
    type State = (FloatTensor<B>, FloatTensor<B>, f64);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight, eps) = ops.state.clone();
        register::<B, 2>(ops, grads, B::rms_norm_backward(x, weight, eps, grad));
    }
}

#[derive(Debug)]
struct SwigluGrad;

impl<B: Kernels> Backward<B, 2> for SwigluGrad {
    /// The gate and up projections.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (gate, up) = ops.state.clone();
        register::<B, 2>(ops, grads, B::swiglu_backward(gate, up, grad));
    }
}

impl<B: Kernels, C: CheckpointStrategy> Kernels for Autodiff<B, C> {
    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        mask: &KeyMask,
    ) -> FloatTensor<Self> {
        let nodes = [q.node.clone(), k.node.clone(), v.node.clone()];
        match AttentionGrad.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (q, k, v) = (q.primitive, k.primitive, v.primitive);
                let (out, probs) = B::attention_for_backward(q.clone(), k.clone(), v.clone(), mask);
                prep.finish((q, k, v, probs), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(<B as Kernels>::attention(
                q.primitive,
                k.primitive,
                v.primitive,
                mask,
            )),
        }
    }

    fn dense(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        let Some(bias) = bias else {
            let nodes = [x.node.clone(), weight.node.clone()];
            return match DenseGrad.prepare::<C>(nodes).compute_bound().stateful() {
                OpsKind::Tracked(prep) => {
                    let (x, weight) = (x.primitive, weight.primitive);
                    let out = B::dense(x.clone(), weight.clone(), None);
                    prep.finish((x, weight), out)
                }
                OpsKind::UnTracked(prep) => {
                    prep.finish(B::dense(x.primitive, weight.primitive, None))
                }
            };
        };
        let nodes = [x.node.clone(), weight.node.clone(), bias.node.clone()];
        match DenseBiasGrad.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (x, weight) = (x.primitive, weight.primitive);
                let out = B::dense(x.clone(), weight.clone(), Some(bias.primitive));
                prep.finish((x, weight), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::dense(
                x.primitive,
                weight.primitive,
                Some(bias.primitive),
            )),
        }
    }

    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (cos, sin) = (cos.primitive, sin.primitive);
        match RopeGrad
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::rope(x.primitive, cos.clone(), sin.clone());
                prep.finish((cos, sin), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::rope(x.primitive, cos, sin)),
        }
    }

    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        let nodes = [x.node.clone(), weight.node.clone()];
        match RmsNormGrad.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (x, weight) = (x.primitive, weight.primitive);
                let out = B::rms_norm(x.clone(), weight.clone(), eps);
                prep.finish((x, weight, eps), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::rms_norm(x.primitive, weight.primitive, eps))
            }
        }
    }

    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let nodes = [gate.node.clone(), up.node.clone()];
        match SwigluGrad.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (gate, up) = (gate.primitive, up.primitive);
                let out = B::swiglu(gate.clone(), up.clone());
                prep.finish((gate, up), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::swiglu(gate.primitive, up.primitive)),
        }
    }
}
