//! The convolution's data movement: im2col (image to patch matrix, padding included)
//! and its adjoint col2im, images in parallel.

use std::cell::RefCell;

use rayon::prelude::*;

use candle_core::{Result, Tensor};

use super::cpu::{View, images_per_chunk, mutate, reuse};
use crate::ops::ConvGeometry;

/// Walks the im2col matrix of `g` row by row, each row left to right: calls
/// `run(row, col, input_offset, len)` for each run of taps inside the image (in NHWC,
/// horizontally adjacent taps are adjacent in memory) and `pad(row, col, len)` for
/// each run of zero padding.
fn for_each_run(
    g: &ConvGeometry,
    mut run: impl FnMut(usize, usize, usize, usize),
    mut pad: impl FnMut(usize, usize, usize),
) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let (k, c) = (g.k, g.c);
    let mut row = 0;
    for b in 0..g.b {
        for oy in 0..oh {
            for ox in 0..ow {
                for ky in 0..k {
                    let y = (oy * g.stride + ky) as isize - g.pad as isize;
                    let col = ky * k * c;
                    if y < 0 || y >= g.h as isize {
                        pad(row, col, k * c);
                        continue;
                    }
                    let x0 = (ox * g.stride) as isize - g.pad as isize;
                    // Kernel columns kx with 0 <= x0 + kx < w.
                    let lo = (-x0).clamp(0, k as isize) as usize;
                    let hi = (g.w as isize - x0).clamp(0, k as isize) as usize;
                    if lo > 0 {
                        pad(row, col, lo * c);
                    }
                    if hi > lo {
                        let input =
                            ((b * g.h + y as usize) * g.w + (x0 + lo as isize) as usize) * c;
                        run(row, col + lo * c, input, (hi - lo) * c);
                    }
                    if hi < k {
                        pad(row, col + hi.max(lo) * c, (k - hi.max(lo)) * c);
                    }
                }
                row += 1;
            }
        }
    }
}

/// `[b, h, w, c]` -> `[b * oh * ow, k * k * c]`, every element written (padding
/// included), into `buffer` where it fits; images in parallel.
pub(super) fn im2col(x: &Tensor, g: &ConvGeometry, buffer: &mut Option<Tensor>) -> Result<Tensor> {
    let input = View::new(x)?;
    let input = input.get()?;
    let out = reuse(buffer, &[g.rows(), g.cols()], x)?;
    let width = g.cols();
    let rows_per_image = g.out_h() * g.out_w();
    let in_per_image = g.h * g.w * g.c;
    let per_chunk = images_per_chunk(g.b, rows_per_image * width);
    mutate(&out, |out| {
        out.par_chunks_mut(per_chunk * rows_per_image * width)
            .zip(input.par_chunks(per_chunk * in_per_image))
            .for_each(|(out, input)| {
                let sub = ConvGeometry {
                    b: input.len() / in_per_image,
                    ..*g
                };
                let out = RefCell::new(out);
                for_each_run(
                    &sub,
                    |row, col, src, len| {
                        let dst = row * width + col;
                        out.borrow_mut()[dst..dst + len].copy_from_slice(&input[src..src + len]);
                    },
                    |row, col, len| {
                        let dst = row * width + col;
                        out.borrow_mut()[dst..dst + len].fill(0.0);
                    },
                );
            });
    })?;
    Ok(out)
}

/// The adjoint of [`im2col`]: sums the taps of `[b * oh * ow, k * k * c]` into
/// `[b, h, w, c]`, in a fixed order, into `buffer` where it fits; images in parallel.
pub(super) fn col2im(
    cols: &Tensor,
    g: &ConvGeometry,
    buffer: &mut Option<Tensor>,
) -> Result<Tensor> {
    let data = View::new(cols)?;
    let data = data.get()?;
    let width = g.cols();
    let out = reuse(buffer, &[g.b, g.h, g.w, g.c], cols)?;
    let rows_per_image = g.out_h() * g.out_w();
    let out_per_image = g.h * g.w * g.c;
    let per_chunk = images_per_chunk(g.b, rows_per_image * width);
    mutate(&out, |out| {
        out.par_chunks_mut(per_chunk * out_per_image)
            .zip(data.par_chunks(per_chunk * rows_per_image * width))
            .for_each(|(out, data)| {
                out.fill(0.0);
                let sub = ConvGeometry {
                    b: out.len() / out_per_image,
                    ..*g
                };
                for_each_run(
                    &sub,
                    |row, col, dst, len| {
                        let src = row * width + col;
                        for (o, v) in out[dst..dst + len].iter_mut().zip(&data[src..src + len]) {
                            *o += v;
                        }
                    },
                    |_, _, _| {},
                );
            });
    })?;
    Ok(out)
}
