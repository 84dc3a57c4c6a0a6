//! CPU plumbing of the fast path: raw access to a tensor's `f32` storage, buffers reused
//! from step to step, and how work is cut into parallel chunks (by shape only, so
//! results do not depend on the thread count).

use std::{cell::RefCell, ops::Range};

use rayon::prelude::*;

use candle_core::{CpuStorage, InplaceOp1, Layout, Result, Storage, StorageRef, Tensor, bail};

/// Read access to the `f32` data of a contiguous CPU tensor.
pub(super) struct View<'a> {
    guard: StorageRef<'a>,
    range: Range<usize>,
}

impl View<'_> {
    pub(super) fn new(t: &Tensor) -> Result<View<'_>> {
        let (guard, layout) = t.storage_and_layout();
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("fast path: tensor must be contiguous");
        };
        Ok(View {
            guard,
            range: start..end,
        })
    }

    pub(super) fn get(&self) -> Result<&[f32]> {
        match &*self.guard {
            Storage::Cpu(CpuStorage::F32(v)) => Ok(&v[self.range.clone()]),
            _ => bail!("fast path: expected an f32 CPU tensor"),
        }
    }
}

/// Runs a closure on the data of a contiguous `f32` CPU tensor, in place.
struct Mutate<F>(RefCell<F>);

impl<F: FnMut(&mut [f32])> InplaceOp1 for Mutate<F> {
    fn name(&self) -> &'static str {
        "fast-path-in-place"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("fast path: tensor must be contiguous");
        };
        match storage {
            CpuStorage::F32(v) => {
                (self.0.borrow_mut())(&mut v[start..end]);
                Ok(())
            }
            _ => bail!("fast path: expected an f32 CPU tensor"),
        }
    }
}

pub(super) fn mutate(t: &Tensor, f: impl FnMut(&mut [f32])) -> Result<()> {
    t.inplace_op1(&Mutate(RefCell::new(f)))
}

pub(super) fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(View::new(t)?.get()?.to_vec())
}

/// `buffer` when it has `dims` (and will be overwritten), else a new zero tensor.
pub(super) fn reuse(buffer: &mut Option<Tensor>, dims: &[usize], like: &Tensor) -> Result<Tensor> {
    if let Some(t) = buffer.as_ref().filter(|t| t.dims() == dims) {
        return Ok(t.clone());
    }
    let t = Tensor::zeros(dims, like.dtype(), like.device())?;
    *buffer = Some(t.clone());
    Ok(t)
}

/// Work items below this many floats run on the calling thread.
pub(super) const PAR_MIN: usize = 1 << 15;

/// Images per parallel chunk of a batch of `b`: a function of the shapes only, so
/// that results do not depend on the thread count.
pub(super) fn images_per_chunk(b: usize, floats_per_image: usize) -> usize {
    if b * floats_per_image < PAR_MIN {
        b.max(1)
    } else {
        b.div_ceil(8).max(1)
    }
}

/// Rows per parallel chunk of a `[rows, c]` matrix (a function of the shape only).
fn rows_per_chunk(rows: usize, c: usize) -> usize {
    if rows * c < PAR_MIN {
        rows.max(1)
    } else {
        rows.div_ceil(8).max(1)
    }
}

/// `f(row chunk)` over the rows of `z: [rows, c]` in parallel.
pub(super) fn par_rows(z: &mut [f32], c: usize, f: impl Fn(&mut [f32]) + Sync + Send) {
    let rows = z.len() / c.max(1);
    z.par_chunks_mut(rows_per_chunk(rows, c) * c.max(1))
        .for_each(f);
}

/// `f(grad chunk, other chunk, bias-gradient partial)` over the rows of `grad` and
/// `other` (both `[rows, c]`) in parallel; returns the partials summed in chunk order.
pub(super) fn par_rows_sum(
    grad: &mut [f32],
    other: &[f32],
    c: usize,
    f: impl Fn(&mut [f32], &[f32], &mut [f32]) + Sync,
) -> Vec<f32> {
    let rows = grad.len() / c.max(1);
    let chunk = rows_per_chunk(rows, c) * c.max(1);
    let partials: Vec<Vec<f32>> = grad
        .par_chunks_mut(chunk)
        .zip(other.par_chunks(chunk))
        .map(|(g, o)| {
            let mut db = vec![0f32; c];
            f(g, o, &mut db);
            db
        })
        .collect();
    let mut db = vec![0f32; c];
    for p in partials {
        for (d, v) in db.iter_mut().zip(p) {
            *d += v;
        }
    }
    db
}
