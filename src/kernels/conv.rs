//! 2-D convolution (NCHW input, OIHW weight, groups 1, dilation 1) as blocked
//! im2col + GEMM, with the input gradient as GEMM + col2im and the weight
//! gradient as GEMM over the same column blocks.
//!
//! The column matrix is never built whole: it is filled one block at a time
//! (a range of output pixels, or a group of input channels) so each block stays
//! in cache between being written and being packed by the GEMM. A 1x1, stride-1,
//! unpadded convolution reads the input directly, with no column copy at all.

use super::{f32_slice, run_items, SendPtr};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use gemm::Parallelism;

/// Bytes of column buffer per block: large enough that the GEMM runs on long
/// panels, small enough to stay in L2/L3 between im2col and packing.
const COLUMN_BLOCK_BYTES: usize = 1 << 20;

/// Sizes of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvGeometry {
    batch: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    padding: usize,
    h_out: usize,
    w_out: usize,
}

impl ConvGeometry {
    pub(crate) fn new(
        x: &[usize],
        w: &[usize],
        stride: usize,
        padding: usize,
    ) -> candle_core::Result<Self> {
        let (&[batch, c_in, h, wd], &[c_out, wc_in, kh, kw]) = (x, w) else {
            candle_core::bail!("conv2d expects a 4-d NCHW input and a 4-d OIHW weight, got {x:?} and {w:?}")
        };
        if wc_in != c_in {
            candle_core::bail!("conv2d weight {w:?} expects {wc_in} input channels but the input {x:?} has {c_in}")
        }
        if stride == 0 || kh == 0 || kw == 0 || h + 2 * padding < kh || wd + 2 * padding < kw {
            candle_core::bail!("conv2d kernel {kh}x{kw} with stride {stride} and padding {padding} does not fit the {h}x{wd} input")
        }
        Ok(Self {
            batch,
            c_in,
            h,
            w: wd,
            c_out,
            kh,
            kw,
            stride,
            padding,
            h_out: (h + 2 * padding - kh) / stride + 1,
            w_out: (wd + 2 * padding - kw) / stride + 1,
        })
    }

    /// Rows of the column matrix (the GEMM's inner dimension).
    fn k(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    fn pixels(&self) -> usize {
        self.h_out * self.w_out
    }

    fn plane(&self) -> usize {
        self.h * self.w
    }

    /// A 1x1, stride-1, unpadded convolution: the input image already is its column matrix.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.padding == 0
    }

    fn out_shape(&self) -> Shape {
        Shape::from((self.batch, self.c_out, self.h_out, self.w_out))
    }

    /// Output pixels per column block for `rows` column rows.
    fn block_pixels(&self, rows: usize) -> usize {
        let target = COLUMN_BLOCK_BYTES / 4 / rows.max(1);
        // Whole output rows when they fit keep im2col's segments long.
        let aligned = (target / self.w_out).max(1) * self.w_out;
        aligned.max(64).min(self.pixels())
    }

    /// The input columns `[lo, hi)` of output row `oy` that kernel tap `(ki, kj)` reads
    /// inside the image, with the input row it reads; `None` when that row is padding.
    fn tap_row(&self, oy: usize, ki: usize, kj: usize) -> Option<(usize, usize, usize)> {
        let iy = (oy * self.stride + ki).checked_sub(self.padding)?;
        if iy >= self.h {
            return None;
        }
        // ix = ox * stride + kj - padding must lie in [0, w).
        let lo = self.padding.saturating_sub(kj).div_ceil(self.stride);
        let hi = (self.w + self.padding)
            .checked_sub(kj)
            .map_or(0, |end| end.div_ceil(self.stride))
            .min(self.w_out);
        Some((iy, lo, hi.max(lo)))
    }

    /// Calls `f(column offset, output x range, tap reads)` for each output-row segment
    /// of pixels `[p0, p1)`; the tap reads are `(input row, first valid ox, end of valid ox)`.
    fn for_each_segment(
        &self,
        p0: usize,
        p1: usize,
        ki: usize,
        kj: usize,
        mut f: impl FnMut(usize, usize, usize, Option<(usize, usize, usize)>),
    ) {
        let mut p = p0;
        while p < p1 {
            let (oy, ox0) = (p / self.w_out, p % self.w_out);
            let ox1 = self.w_out.min(ox0 + (p1 - p));
            f(p - p0, ox0, ox1, self.tap_row(oy, ki, kj));
            p += ox1 - ox0;
        }
    }

    /// Fills `col` (rows: channels `c0..c1` x taps, columns: pixels `p0..p1`) from one image.
    fn im2col(&self, img: &[f32], c0: usize, c1: usize, p0: usize, p1: usize, col: &mut [f32]) {
        if self.stride == 1 && p0.is_multiple_of(self.w_out) && (p1 - p0).is_multiple_of(self.w_out) {
            return self.im2col_rows(img, c0, c1, p0 / self.w_out, p1 / self.w_out, col);
        }
        let np = p1 - p0;
        let mut row = 0;
        for c in c0..c1 {
            let plane = &img[c * self.plane()..(c + 1) * self.plane()];
            for ki in 0..self.kh {
                for kj in 0..self.kw {
                    let dst = &mut col[row * np..(row + 1) * np];
                    self.for_each_segment(p0, p1, ki, kj, |off, ox0, ox1, tap| {
                        let seg = &mut dst[off..off + ox1 - ox0];
                        let Some((iy, lo, hi)) = tap else {
                            seg.fill(0.0);
                            return;
                        };
                        let (lo, hi) = (lo.clamp(ox0, ox1), hi.clamp(ox0, ox1));
                        seg[..lo - ox0].fill(0.0);
                        seg[hi - ox0..].fill(0.0);
                        let src = &plane[iy * self.w..(iy + 1) * self.w];
                        let ix0 = lo * self.stride + kj - self.padding;
                        let inner = &mut seg[lo - ox0..hi - ox0];
                        if self.stride == 1 {
                            inner.copy_from_slice(&src[ix0..ix0 + inner.len()]);
                        } else {
                            for (t, v) in inner.iter_mut().enumerate() {
                                *v = src[ix0 + t * self.stride];
                            }
                        }
                    });
                    row += 1;
                }
            }
        }
    }

    /// [`Self::im2col`] at stride 1 over whole output rows `oy0..oy1`: each
    /// channel's rows are first copied into a zero-bordered band, so that every
    /// tap's row is one straight copy. (On the default models' 16 x 16 latents
    /// the general path spent most of its time on per-segment bookkeeping.)
    fn im2col_rows(&self, img: &[f32], c0: usize, c1: usize, oy0: usize, oy1: usize, col: &mut [f32]) {
        let (p, wo) = (self.padding, self.w_out);
        // The border cells are the same for every channel and stay zero.
        let (band_w, band_rows) = self.band_shape(oy0, oy1);
        let mut band = vec![0f32; band_w * band_rows];
        let np = (oy1 - oy0) * wo;
        let mut row = 0;
        for c in c0..c1 {
            let plane = &img[c * self.plane()..(c + 1) * self.plane()];
            for (r, y) in self.band_image_rows(oy0, band_rows) {
                copy_row(&mut band[r * band_w + p..r * band_w + p + self.w], &plane[y * self.w..(y + 1) * self.w]);
            }
            for ki in 0..self.kh {
                for kj in 0..self.kw {
                    let dst = &mut col[row * np..(row + 1) * np];
                    for (r, out) in dst.chunks_exact_mut(wo).enumerate() {
                        let start = (r + ki) * band_w + kj;
                        copy_row(out, &band[start..start + wo]);
                    }
                    row += 1;
                }
            }
        }
    }

    /// Adds `col` (laid out as in [`Self::im2col`]) back into the image gradient `img`.
    fn col2im_add(&self, col: &[f32], c0: usize, c1: usize, p0: usize, p1: usize, img: &mut [f32]) {
        if self.stride == 1 && p0.is_multiple_of(self.w_out) && (p1 - p0).is_multiple_of(self.w_out) {
            return self.col2im_rows(col, c0, c1, p0 / self.w_out, p1 / self.w_out, img);
        }
        let np = p1 - p0;
        let mut row = 0;
        for c in c0..c1 {
            let plane = &mut img[c * self.plane()..(c + 1) * self.plane()];
            for ki in 0..self.kh {
                for kj in 0..self.kw {
                    let src = &col[row * np..(row + 1) * np];
                    self.for_each_segment(p0, p1, ki, kj, |off, ox0, ox1, tap| {
                        let Some((iy, lo, hi)) = tap else { return };
                        let (lo, hi) = (lo.clamp(ox0, ox1), hi.clamp(ox0, ox1));
                        let seg = &src[off + lo - ox0..off + hi - ox0];
                        let dst = &mut plane[iy * self.w..(iy + 1) * self.w];
                        let ix0 = lo * self.stride + kj - self.padding;
                        if self.stride == 1 {
                            for (d, s) in dst[ix0..ix0 + seg.len()].iter_mut().zip(seg) {
                                *d += s;
                            }
                        } else {
                            for (t, s) in seg.iter().enumerate() {
                                dst[ix0 + t * self.stride] += s;
                            }
                        }
                    });
                    row += 1;
                }
            }
        }
    }

    /// [`Self::col2im_add`] at stride 1 over whole output rows `oy0..oy1`, the
    /// reverse of [`Self::im2col_rows`]: every tap's row is added straight into
    /// a zero-bordered band, whose inside is then added to the image. (On the
    /// default models' small images the general path's per-segment bookkeeping
    /// was most of the input gradient's time.)
    fn col2im_rows(&self, col: &[f32], c0: usize, c1: usize, oy0: usize, oy1: usize, img: &mut [f32]) {
        let (p, wo) = (self.padding, self.w_out);
        let (band_w, band_rows) = self.band_shape(oy0, oy1);
        let mut band = vec![0f32; band_w * band_rows];
        let np = (oy1 - oy0) * wo;
        let mut row = 0;
        for c in c0..c1 {
            band.fill(0.0);
            for ki in 0..self.kh {
                for kj in 0..self.kw {
                    for (r, src) in col[row * np..(row + 1) * np].chunks_exact(wo).enumerate() {
                        let start = (r + ki) * band_w + kj;
                        for (d, s) in band[start..start + wo].iter_mut().zip(src) {
                            *d += s;
                        }
                    }
                    row += 1;
                }
            }
            let plane = &mut img[c * self.plane()..(c + 1) * self.plane()];
            for (r, y) in self.band_image_rows(oy0, band_rows) {
                let inside = &band[r * band_w + p..r * band_w + p + self.w];
                for (d, s) in plane[y * self.w..(y + 1) * self.w].iter_mut().zip(inside) {
                    *d += s;
                }
            }
        }
    }

    /// Width and height of the zero-bordered band that output rows
    /// `oy0..oy1` read at stride 1: padded rows `oy0 .. oy1 + kh - 1`.
    fn band_shape(&self, oy0: usize, oy1: usize) -> (usize, usize) {
        (self.w + 2 * self.padding, oy1 - oy0 + self.kh - 1)
    }

    /// The band rows (of a band starting at output row `oy0`) that hold image
    /// rows, each with its image row; the others are padding.
    fn band_image_rows(&self, oy0: usize, band_rows: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..band_rows).filter_map(move |r| (oy0 + r).checked_sub(self.padding).filter(|&y| y < self.h).map(|y| (r, y)))
    }

    /// Splits the input channels into one group per worker, so backward passes
    /// write disjoint slices of their results.
    fn channel_groups(&self) -> Vec<(usize, usize)> {
        let groups = rayon::current_num_threads().clamp(1, self.c_in);
        (0..groups)
            .map(|g| (g * self.c_in / groups, (g + 1) * self.c_in / groups))
            .collect()
    }
}

/// `dst.copy_from_slice(src)`, with the default models' row lengths (4, 8
/// and 16 values) as fixed-size copies that compile to register moves: a call
/// to memcpy per row was half of im2col's time on their small images.
#[inline(always)]
fn copy_row(dst: &mut [f32], src: &[f32]) {
    if !(copy_fixed::<16>(dst, src) || copy_fixed::<8>(dst, src) || copy_fixed::<4>(dst, src)) {
        dst.copy_from_slice(src);
    }
}

/// Copies `src` into `dst` when both hold exactly `N` values.
#[inline(always)]
fn copy_fixed<const N: usize>(dst: &mut [f32], src: &[f32]) -> bool {
    match (<&mut [f32; N]>::try_from(dst), <&[f32; N]>::try_from(src)) {
        (Ok(d), Ok(s)) => {
            *d = *s;
            true
        }
        _ => false,
    }
}

/// `dst (m x n) = [dst +] lhs (m x k) * rhs (k x n)`, each matrix given as
/// (pointer, row stride, column stride).
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    dst: (*mut f32, usize, usize),
    accumulate: bool,
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
    par: Parallelism,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst.0,
        dst.2 as isize,
        dst.1 as isize,
        accumulate,
        lhs.0,
        lhs.2 as isize,
        lhs.1 as isize,
        rhs.0,
        rhs.2 as isize,
        rhs.1 as isize,
        1.0,
        1.0,
        false,
        false,
        false,
        par,
    )
}

/// Forward: `y[n] = W (c_out x k) * col(x[n]) (k x pixels) [+ bias]`.
fn forward(g: &ConvGeometry, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (k, pixels) = (g.k(), g.pixels());
    let mut y = vec![0f32; g.batch * g.c_out * pixels];
    let block = g.block_pixels(k);
    let blocks = pixels.div_ceil(block);
    let yp = SendPtr(y.as_mut_ptr());
    run_items(g.batch * blocks, |item, par, col| {
        let (n, p0) = (item / blocks, (item % blocks) * block);
        let p1 = (p0 + block).min(pixels);
        let img = &x[n * g.c_in * g.plane()..(n + 1) * g.c_in * g.plane()];
        // SAFETY: item (n, block) owns columns p0..p1 of image n's output rows.
        let out = unsafe { yp.get().add(n * g.c_out * pixels + p0) };
        if let Some(b) = bias {
            for (co, &bv) in b.iter().enumerate() {
                unsafe { std::slice::from_raw_parts_mut(out.add(co * pixels), p1 - p0) }.fill(bv);
            }
        }
        let rhs = if g.is_pointwise() {
            (img[p0..].as_ptr(), pixels, 1)
        } else {
            col.resize(k * (p1 - p0), 0.0);
            g.im2col(img, 0, g.c_in, p0, p1, col);
            (col.as_ptr(), p1 - p0, 1)
        };
        unsafe {
            gemm_f32(g.c_out, p1 - p0, k, (out, pixels, 1), bias.is_some(), (w.as_ptr(), k, 1), rhs, par)
        };
    });
    y
}

/// Input gradient: `col = W^T (k x c_out) * dy[n] (c_out x pixels)`, added back by col2im.
/// Each worker owns a group of input channels, i.e. a band of `W^T`'s rows.
fn input_grad(g: &ConvGeometry, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let (k, pixels, taps) = (g.k(), g.pixels(), g.kh * g.kw);
    let mut dx = vec![0f32; g.batch * g.c_in * g.plane()];
    let groups = g.channel_groups();
    let dxp = SendPtr(dx.as_mut_ptr());
    run_items(groups.len(), |item, par, col| {
        let (c0, c1) = groups[item];
        let rows = (c1 - c0) * taps;
        let block = g.block_pixels(rows);
        let lhs = (w[c0 * taps..].as_ptr(), 1, k);
        for n in 0..g.batch {
            let grad = &dy[n * g.c_out * pixels..(n + 1) * g.c_out * pixels];
            // SAFETY: this item alone writes channels c0..c1 of every image.
            let img = unsafe {
                std::slice::from_raw_parts_mut(dxp.get().add(n * g.c_in * g.plane()), g.c_in * g.plane())
            };
            if g.is_pointwise() {
                let dst = (img[c0 * pixels..].as_mut_ptr(), pixels, 1);
                unsafe { gemm_f32(rows, pixels, g.c_out, dst, false, lhs, (grad.as_ptr(), pixels, 1), par) };
                continue;
            }
            for p0 in (0..pixels).step_by(block) {
                let p1 = (p0 + block).min(pixels);
                col.resize(rows * (p1 - p0), 0.0);
                let dst = (col.as_mut_ptr(), p1 - p0, 1);
                let rhs = (grad[p0..].as_ptr(), pixels, 1);
                unsafe { gemm_f32(rows, p1 - p0, g.c_out, dst, false, lhs, rhs, par) };
                g.col2im_add(col, c0, c1, p0, p1, img);
            }
        }
    });
    dx
}

/// Weight gradient: `dW (c_out x k) = sum over images and pixel blocks of dy (c_out x pixels) * col^T`.
/// Each worker owns a group of input channels, i.e. a band of `dW`'s columns.
fn weight_grad(g: &ConvGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (k, pixels, taps) = (g.k(), g.pixels(), g.kh * g.kw);
    let mut dw = vec![0f32; g.c_out * k];
    let groups = g.channel_groups();
    let dwp = SendPtr(dw.as_mut_ptr());
    run_items(groups.len(), |item, par, col| {
        let (c0, c1) = groups[item];
        let rows = (c1 - c0) * taps;
        let block = g.block_pixels(rows);
        // SAFETY: this item alone writes columns c0*taps..c1*taps of dW.
        let dst = (unsafe { dwp.get().add(c0 * taps) }, k, 1);
        let mut accumulate = false;
        for n in 0..g.batch {
            let img = &x[n * g.c_in * g.plane()..(n + 1) * g.c_in * g.plane()];
            let grad = &dy[n * g.c_out * pixels..(n + 1) * g.c_out * pixels];
            for p0 in (0..pixels).step_by(block) {
                let p1 = (p0 + block).min(pixels);
                // col^T: element (pixel, row) of a (rows x pixels) block.
                let rhs = if g.is_pointwise() {
                    (img[c0 * pixels + p0..].as_ptr(), 1, pixels)
                } else {
                    col.resize(rows * (p1 - p0), 0.0);
                    g.im2col(img, c0, c1, p0, p1, col);
                    (col.as_ptr(), 1, p1 - p0)
                };
                let lhs = (grad[p0..].as_ptr(), pixels, 1);
                unsafe { gemm_f32(g.c_out, rows, p1 - p0, dst, accumulate, lhs, rhs, par) };
                accumulate = true;
            }
        }
    });
    dw
}

/// The forward convolution; applied with two arguments (input, weight) or three (plus bias).
pub(crate) struct Conv2dOp {
    pub(crate) stride: usize,
    pub(crate) padding: usize,
}

impl Conv2dOp {
    fn fwd(
        &self,
        (x, lx): (&CpuStorage, &Layout),
        (w, lw): (&CpuStorage, &Layout),
        bias: Option<(&CpuStorage, &Layout)>,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = ConvGeometry::new(lx.dims(), lw.dims(), self.stride, self.padding)?;
        let bias = match bias {
            Some((b, lb)) => {
                if lb.dims() != [g.c_out] {
                    candle_core::bail!("conv2d bias has shape {:?}, expected [{}]", lb.dims(), g.c_out)
                }
                Some(f32_slice(b, lb, "bias")?)
            }
            None => None,
        };
        let y = forward(&g, f32_slice(x, lx, "input")?, f32_slice(w, lw, "weight")?, bias);
        Ok((CpuStorage::F32(y), g.out_shape()))
    }

    /// Gradients of input and weight, each through its own GEMM kernel.
    fn grads(&self, x: &Tensor, w: &Tensor, dy: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let g = ConvGeometry::new(x.dims(), w.dims(), self.stride, self.padding)?;
        let dy = dy.contiguous()?;
        let dx = dy.apply_op2_no_bwd(w, &InputGradOp(g))?;
        let dw = x.apply_op2_no_bwd(&dy, &WeightGradOp(g))?;
        Ok((dx, dw))
    }
}

impl CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "fast-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.fwd((s1, l1), (s2, l2), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = self.grads(x, w, dy)?;
        Ok((Some(dx), Some(dw)))
    }
}

impl CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        "fast-conv2d-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.fwd((s1, l1), (s2, l2), Some((s3, l3)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = self.grads(x, w, dy)?;
        // Per (sample, channel) first: candle reduces the last dimension fast, others slowly.
        let db = dy.flatten_from(2)?.sum(2)?.sum(0)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// `dx` from (`dy`, `w`).
struct InputGradOp(ConvGeometry);

impl CustomOp2 for InputGradOp {
    fn name(&self) -> &'static str {
        "fast-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let dx = input_grad(g, f32_slice(s1, l1, "output gradient")?, f32_slice(s2, l2, "weight")?);
        Ok((CpuStorage::F32(dx), Shape::from((g.batch, g.c_in, g.h, g.w))))
    }
}

/// `dw` from (`x`, `dy`).
struct WeightGradOp(ConvGeometry);

impl CustomOp2 for WeightGradOp {
    fn name(&self) -> &'static str {
        "fast-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let dw = weight_grad(g, f32_slice(s1, l1, "input")?, f32_slice(s2, l2, "output gradient")?);
        Ok((CpuStorage::F32(dw), Shape::from((g.c_out, g.c_in, g.kh, g.kw))))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{conv2d, tests::{assert_close, random}};
    use candle_core::{Tensor, Var};

    /// (batch, c_in, h, w, c_out, k, stride, padding)
    type Case = (usize, usize, usize, usize, usize, usize, usize, usize);
    const CASES: &[Case] = &[
        (1, 3, 7, 9, 5, 3, 1, 1),
        (2, 4, 9, 8, 6, 3, 2, 1),
        (3, 5, 11, 11, 7, 3, 2, 0),
        (2, 6, 10, 7, 4, 3, 1, 0),
        (2, 8, 6, 5, 3, 1, 1, 0),
        (1, 5, 7, 7, 9, 1, 2, 0),
        (2, 3, 5, 6, 4, 1, 1, 1),
        (1, 2, 13, 12, 3, 5, 2, 2),
        (2, 70, 20, 18, 33, 3, 1, 1),
        // Column blocks of several rows, and blocks that end inside an output row.
        (1, 300, 40, 40, 8, 3, 2, 1),
        (1, 1000, 10, 18, 4, 3, 1, 1),
        // Stride 1 over bands of whole output rows, with padding above, below and wider taps.
        (1, 300, 40, 40, 8, 3, 1, 1),
        (1, 2, 13, 12, 3, 5, 1, 2),
    ];

    /// Convolution spelled out from differentiable candle ops (pad, strided taps,
    /// one matrix product), as the gradient reference: candle 0.11's own conv2d
    /// backward takes the output padding of both axes from the height, and fails
    /// on inputs such as 9x8 at stride 2.
    fn unfolded_conv(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> candle_core::Result<Tensor> {
        let (n, c, h, wd) = x.dims4()?;
        let (co, _, kh, kw) = w.dims4()?;
        let (ho, wo) = ((h + 2 * padding - kh) / stride + 1, (wd + 2 * padding - kw) / stride + 1);
        // Enough trailing zeros that every tap can take ho * stride rows and wo * stride columns.
        let x = x.pad_with_zeros(2, padding, (ho * stride + kh).saturating_sub(h + padding))?;
        let x = x.pad_with_zeros(3, padding, (wo * stride + kw).saturating_sub(wd + padding))?;
        let mut taps = Vec::new();
        for ki in 0..kh {
            for kj in 0..kw {
                let t = x.narrow(2, ki, ho * stride)?.narrow(3, kj, wo * stride)?;
                let t = t.reshape((n, c, ho, stride, wo, stride))?.narrow(3, 0, 1)?.narrow(5, 0, 1)?;
                taps.push(t.reshape((n, c, 1, ho * wo))?);
            }
        }
        let cols = Tensor::cat(&taps, 2)?.reshape((n, c * kh * kw, ho * wo))?;
        w.reshape((co, c * kh * kw))?.broadcast_matmul(&cols)?.reshape((n, co, ho, wo))
    }

    #[test]
    fn forward_and_gradients_match_candle() -> candle_core::Result<()> {
        for (i, &(n, ci, h, w, co, k, s, p)) in CASES.iter().enumerate() {
            let x = Var::from_tensor(&random(&[n, ci, h, w], i as u64 * 3)?)?;
            let wt = Var::from_tensor(&random(&[co, ci, k, k], i as u64 * 3 + 1)?)?;
            let b = Var::from_tensor(&random(&[co], i as u64 * 3 + 2)?)?;
            let case = format!("case {i} {:?}", CASES[i]);
            let bias = b.reshape((1, co, 1, 1))?;
            let reference = x.conv2d(&wt, p, s, 1, 1)?.broadcast_add(&bias)?;
            let ours = conv2d(&x, &wt, Some(&b), s, p)?;
            assert_close(&ours, &reference, 1e-5, &format!("{case} forward"))?;
            let unfolded = unfolded_conv(&x, &wt, s, p)?.broadcast_add(&bias)?;
            assert_close(&unfolded, &reference, 1e-5, &format!("{case} unfolded reference"))?;
            // A weighted sum makes every output element's gradient distinct.
            let probe = random(reference.dims(), 99)?;
            let g_ref = (unfolded * &probe)?.sum_all()?.backward()?;
            let g_ours = (ours * &probe)?.sum_all()?.backward()?;
            for (var, name) in [(&x, "input"), (&wt, "weight"), (&b, "bias")] {
                let (Some(r), Some(o)) = (g_ref.get(var), g_ours.get(var)) else {
                    panic!("{case}: no {name} gradient")
                };
                assert_close(o, r, 1e-4, &format!("{case} {name} gradient"))?;
            }
            // Without bias the two-argument op runs.
            let plain = conv2d(&x, &wt, None, s, p)?;
            assert_close(&plain, &x.conv2d(&wt, p, s, 1, 1)?, 1e-5, &format!("{case} no bias"))?;
        }
        Ok(())
    }

    #[test]
    fn gradients_match_candle_conv2d_backward() -> candle_core::Result<()> {
        // Shapes candle's own backward handles: both axes leave the same remainder.
        for (i, &(n, ci, h, co, k, s, p)) in [(2, 4, 9, 6, 3, 2, 1), (3, 6, 8, 5, 3, 1, 1), (2, 5, 7, 3, 1, 1, 0)].iter().enumerate() {
            let x = Var::from_tensor(&random(&[n, ci, h, h], 10 + i as u64)?)?;
            let wt = Var::from_tensor(&random(&[co, ci, k, k], 20 + i as u64)?)?;
            let reference = x.conv2d(&wt, p, s, 1, 1)?;
            let probe = random(reference.dims(), 98)?;
            let g_ref = (reference * &probe)?.sum_all()?.backward()?;
            let g_ours = (conv2d(&x, &wt, None, s, p)? * &probe)?.sum_all()?.backward()?;
            for (var, name) in [(&x, "input"), (&wt, "weight")] {
                let (Some(r), Some(o)) = (g_ref.get(var), g_ours.get(var)) else {
                    panic!("case {i}: no {name} gradient")
                };
                assert_close(o, r, 1e-4, &format!("case {i} {name} gradient"))?;
            }
        }
        Ok(())
    }

    #[test]
    fn refuses_mismatched_channels() -> candle_core::Result<()> {
        let x = random(&[1, 3, 5, 5], 1)?;
        let w = random(&[2, 4, 3, 3], 2)?;
        let err = conv2d(&x, &w, None, 1, 1).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("4 input channels"), "{err}");
        Ok(())
    }
}
