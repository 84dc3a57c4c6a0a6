//! Non-overlapping max-pooling and its backward pass (each gradient routed to its
//! window's first maximum).

use rayon::prelude::*;

use candle_core::{Result, Tensor};

use super::cpu::View;

/// The output of a non-overlapping max-pool and where each maximum came from.
pub(super) struct Pooled {
    /// `[b, oh / p, ow / p, c]`.
    pub(super) y: Tensor,
    /// Per pooled element, the index of its maximum within its image of the pooled
    /// tensor (the first maximum of its window in scan order, as TensorFlow and
    /// PyTorch route it).
    pub(super) argmax: Vec<u32>,
}

/// Non-overlapping `p x p` max-pooling of `y: [b, h, w, c]` (windows that do not fit
/// are dropped, as Candle and Keras' 'valid' pooling do).
pub(super) fn max_pool(y: &Tensor, p: usize) -> Result<Pooled> {
    let (b, h, w, c) = y.dims4()?;
    let (ph, pw) = (h / p, w / p);
    let data = View::new(y)?;
    let data = data.get()?;
    let per_image = ph * pw * c;
    let mut out = vec![0f32; b * per_image];
    let mut argmax = vec![0u32; b * per_image];
    out.par_chunks_mut(per_image.max(1))
        .zip(argmax.par_chunks_mut(per_image.max(1)))
        .enumerate()
        .for_each(|(img, (out, arg))| {
            let image = &data[img * h * w * c..(img + 1) * h * w * c];
            for py in 0..ph {
                for px in 0..pw {
                    let o = (py * pw + px) * c;
                    for dy in 0..p {
                        for dx in 0..p {
                            let src = ((py * p + dy) * w + px * p + dx) * c;
                            let first = dy == 0 && dx == 0;
                            for ch in 0..c {
                                let v = image[src + ch];
                                if first || v > out[o + ch] {
                                    out[o + ch] = v;
                                    arg[o + ch] = (src + ch) as u32;
                                }
                            }
                        }
                    }
                }
            }
        });
    Ok(Pooled {
        y: Tensor::from_vec(out, (b, ph, pw, c), y.device())?,
        argmax,
    })
}

/// The gradient of the pooled tensor's input `[rows, c]` from that of its output.
pub(super) fn max_pool_backward(grad: &Tensor, pooled: &Pooled, input: &Tensor) -> Result<Tensor> {
    let mut out = vec![0f32; input.elem_count()];
    let images = pooled.y.dim(0)?.max(1);
    let (in_per_image, out_per_image) = (out.len() / images, pooled.argmax.len() / images);
    let grad = View::new(grad)?;
    let grad = grad.get()?;
    out.par_chunks_mut(in_per_image.max(1))
        .zip(grad.par_chunks(out_per_image.max(1)))
        .zip(pooled.argmax.par_chunks(out_per_image.max(1)))
        .for_each(|((out, grad), argmax)| {
            for (g, &i) in grad.iter().zip(argmax) {
                out[i as usize] += g;
            }
        });
    Tensor::from_vec(out, input.shape(), input.device())
}
