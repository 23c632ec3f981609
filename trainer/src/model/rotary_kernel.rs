//! The rotary embedding of a projection's heads as one CubeCL kernel: `x [B, S, n·hd]` (a
//! q or k projection, as the product wrote it) → `[B, n, S, hd]` rotated, `x·cos + rot(x)·sin`
//! with `rot(x) = [−x₂, x₁]` over the two halves of each head.
//!
//! Composed from burn's operations ([`apply_rotary`](crate::model::rope::apply_rotary)) a
//! rotation is a view into heads, two slices, a negation, a concatenation and three element-wise
//! operations, which burn's fusion runs as three to six launches per projection in a decode step.
//! Here one unit computes one output element, reading its element and its partner in the other
//! half of the head. On backends other than CubeCL (the CPU's flex) the same arithmetic runs as
//! burn's operations, `rot(x)` as a product with a signed permutation. The kernel is checked
//! against the composed rotation on the device by `trainer bench kernels`;
//! [`CausalLm::rotary_kernel`](crate::model::CausalLm::rotary_kernel) says where it runs.
//!
//! [`rotary_into_cache`] does a decode step's whole attention prologue in one launch: from the
//! fused q/k/v projection `[B, S, (H_q + 2·H_kv)·hd]` it writes q's heads rotated, and k's heads
//! rotated and v's heads into the KV cache at their positions, in place (four launches before:
//! two rotations and two cache writes).

use burn::backend::fusion::custom::TensorSpec;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::{FloatDType, Shape, Slice, Tensor, TensorData};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use cubecl::ir::AddressType;
use cubecl::prelude::CubeDim;

use super::overwrite::elementwise_cube_count;

use burn_cubecl::tensor::CubeTensor;

use kernel::{rotary_into_cache_kernel, rotary_kernel};

/// Units per cube.
const UNITS: usize = 256;

/// `[B, n, S, hd]` for `x [B, S, n·hd]` and tables `[B, 1, S, hd]`.
fn rotated_shape(x: &Shape, cos: &Shape) -> Shape {
    let head_dim = cos[3];
    Shape::new([x[0], x[2] / head_dim, x[1], head_dim])
}

/// `(H_q, H_kv, hd)` of a fused projection `[B, S, (H_q + 2·H_kv)·hd]`, tables `[B, 1, S, hd]`
/// and a cache `[B, H_kv, C, hd]`.
fn fused_heads(qkv: &Shape, cos: &Shape, cache: &Shape) -> (usize, usize, usize) {
    let (head_dim, kv_heads) = (cos[3], cache[1]);
    (qkv[2] / head_dim - 2 * kv_heads, kv_heads, head_dim)
}

/// The outputs of [`RotaryOps::rotary_into_cache`]: q `[B, H_q, S, hd]` and the two caches.
fn into_cache_specs(qkv: &TensorSpec, cos: &TensorSpec, _sin: &TensorSpec, k_cache: &TensorSpec, v_cache: &TensorSpec, _start: &TensorSpec) -> (TensorSpec, TensorSpec, TensorSpec) {
    let (heads, _, head_dim) = fused_heads(&qkv.shape, &cos.shape, &k_cache.shape);
    let q = TensorSpec::new(Shape::new([qkv.shape[0], heads, qkv.shape[1], head_dim]), qkv.dtype);
    (q, k_cache.clone(), v_cache.clone())
}

/// The rotary embedding of the heads of `x`, routed to each backend.
#[backend_extension(Cube, Flex, Fusion)]
pub trait RotaryOps: Backend {
    /// `x [B, S, n·hd]`, `cos` and `sin` `[B, 1, S, hd]` → `[B, n, S, hd]`, in `x`'s dtype.
    #[fusion(dtype = x, shape = rotated_shape(x, cos))]
    fn rotary_heads(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>) -> FloatTensor<Self>;

    /// From `qkv [B, S, (H_q + 2·H_kv)·hd]`, tables `[B, 1, S, hd]` and the caches `[B, H_kv, C,
    /// hd]`: q's heads rotated `[B, H_q, S, hd]`, and the caches with k's heads rotated and v's
    /// heads written at positions `start..start + S`, `start [1]` an f32 tensor (on the device,
    /// so that a captured step reads each replay's position).
    #[fusion(meta = into_cache_specs)]
    fn rotary_into_cache(
        qkv: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        k_cache: FloatTensor<Self>,
        v_cache: FloatTensor<Self>,
        start: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl RotaryOps for burn::backend::Flex {
    fn rotary_heads(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>) -> FloatTensor<Self> {
        let shape = rotated_shape(&x.shape(), &cos.shape());
        let [b, n, s, hd] = [shape[0], shape[1], shape[2], shape[3]];
        let (dtype, device) = (x.dtype(), x.device());
        let heads = Self::float_swap_dims(Self::float_reshape(x, Shape::new([b, s, n, hd])), 1, 2);
        // rot(x) = x · P with P[j + hd/2, j] = −1 and P[j, j + hd/2] = 1.
        let half = hd / 2;
        let mut p = vec![0f32; hd * hd];
        for j in 0..half {
            p[(j + half) * hd + j] = -1.0;
            p[j * hd + j + half] = 1.0;
        }
        let p = Self::float_cast(Self::float_from_data(TensorData::new(p, [hd, hd]), &device), FloatDType::from(dtype));
        let rotated = Self::float_matmul(heads.clone(), Self::float_reshape(p, Shape::new([1, 1, hd, hd])));
        Self::float_add(Self::float_mul(heads, cos), Self::float_mul(rotated, sin))
    }

    fn rotary_into_cache(
        qkv: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        k_cache: FloatTensor<Self>,
        v_cache: FloatTensor<Self>,
        start: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let start = host_position(start);
        let (heads, kv_heads, hd) = fused_heads(&qkv.shape(), &cos.shape(), &k_cache.shape());
        let [b, s] = [qkv.shape()[0], qkv.shape()[1]];
        let part = |from: usize, n: usize| Self::float_slice(qkv.clone(), &[Slice::from(0..b), Slice::from(0..s), Slice::from(from * hd..(from + n) * hd)]);
        let q = Self::rotary_heads(part(0, heads), cos.clone(), sin.clone());
        let k = Self::rotary_heads(part(heads, kv_heads), cos, sin);
        let v = Self::float_swap_dims(Self::float_reshape(part(heads + kv_heads, kv_heads), Shape::new([b, s, kv_heads, hd])), 1, 2);
        let at = [Slice::from(0..b), Slice::from(0..kv_heads), Slice::from(start..start + s), Slice::from(0..hd)];
        (q, Self::float_slice_assign(k_cache, &at, k), Self::float_slice_assign(v_cache, &at, v))
    }
}

impl RotaryOps for CubeBackend {
    fn rotary_heads(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>) -> FloatTensor<Self> {
        let (x, cos, sin) = (into_contiguous(x), into_contiguous(cos), into_contiguous(sin));
        let shape = rotated_shape(x.meta.shape(), cos.meta.shape());
        let (heads, head_dim) = (shape[1], shape[3]);
        let elements = shape.num_elements();
        let out = empty_device_dtype(x.client.clone(), x.device.clone(), shape, x.dtype);
        let client = x.client.clone();
        let dtype = burn::backend::cubecl::dtype_to_storage_type(x.dtype);
        rotary_kernel::launch(
            &client,
            elementwise_cube_count(elements, UNITS),
            CubeDim::new_1d(UNITS as u32),
            AddressType::U32.max(x.required_address_type()).max(out.required_address_type()),
            x.into_tensor_arg(),
            cos.into_tensor_arg(),
            sin.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            heads,
            head_dim,
            dtype,
        );
        out
    }

    fn rotary_into_cache(
        qkv: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        k_cache: FloatTensor<Self>,
        v_cache: FloatTensor<Self>,
        start: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (qkv, cos, sin, start) = (into_contiguous(qkv), into_contiguous(cos), into_contiguous(sin), into_contiguous(start));
        let (k_cache, v_cache) = (writable(k_cache), writable(v_cache));
        let (heads, kv_heads, head_dim) = fused_heads(qkv.meta.shape(), cos.meta.shape(), k_cache.meta.shape());
        let [b, s] = [qkv.meta.shape()[0], qkv.meta.shape()[1]];
        let q = empty_device_dtype(qkv.client.clone(), qkv.device.clone(), Shape::new([b, heads, s, head_dim]), qkv.dtype);
        let client = qkv.client.clone();
        let elements = qkv.meta.shape().num_elements();
        let address = [&cos, &sin, &k_cache, &v_cache, &q].iter().fold(AddressType::U32.max(qkv.required_address_type()), |a, t| a.max(t.required_address_type()));
        let dtype = burn::backend::cubecl::dtype_to_storage_type(qkv.dtype);
        rotary_into_cache_kernel::launch(
            &client,
            elementwise_cube_count(elements, UNITS),
            CubeDim::new_1d(UNITS as u32),
            address,
            qkv.into_tensor_arg(),
            cos.into_tensor_arg(),
            sin.into_tensor_arg(),
            q.clone().into_tensor_arg(),
            k_cache.clone().into_tensor_arg(),
            v_cache.clone().into_tensor_arg(),
            start.into_tensor_arg(),
            heads,
            kv_heads,
            head_dim,
            dtype,
        );
        (q, k_cache, v_cache)
    }
}

/// The position in `start [1]` (f32) on the host (the CPU's tensors are on the host already).
fn host_position(start: FloatTensor<burn::backend::Flex>) -> usize {
    let data = cubecl::future::block_on(burn::backend::Flex::float_into_data(start)).expect("the CPU backend reads its own tensors");
    data.iter::<f32>().next().map_or(0, |p| p as usize)
}

/// `cache` itself when the kernel may write into it (no other tensor shares its buffer), else
/// a copy.
fn writable(cache: CubeTensor) -> CubeTensor {
    into_contiguous(if cache.can_mut() && cache.is_nonoverlapping() { cache } else { cache.copy() })
}

/// The rotary embedding of the heads of `x [B, S, n·hd]` with tables `cos`, `sin`
/// `[B, 1, S, hd]` → `[B, n, S, hd]` (see the module).
///
/// All tensors must be without autodiff (the kernel has no backward pass) and of one dtype.
pub fn rotary_heads(x: Tensor<3>, cos: Tensor<4>, sin: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::rotary_heads(x.into_dispatch(), cos.into_dispatch(), sin.into_dispatch()))
}

/// From the fused projection `qkv [B, S, (H_q + 2·H_kv)·hd]` with tables `cos`, `sin`
/// `[B, 1, S, hd]`: q's heads rotated `[B, H_q, S, hd]`, and the caches `[B, H_kv, C, hd]` with k's
/// heads rotated and v's heads written at positions `start..start + S` (see the module), `start`
/// `[1]` in f32.
///
/// All tensors must be without autodiff and of one dtype but `start`; the caches are written in
/// place when nothing else holds them, else copied first.
pub fn rotary_into_cache(qkv: Tensor<3>, cos: Tensor<4>, sin: Tensor<4>, k_cache: Tensor<4>, v_cache: Tensor<4>, start: Tensor<1>) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
    let (q, k, v) = Dispatch::rotary_into_cache(qkv.into_dispatch(), cos.into_dispatch(), sin.into_dispatch(), k_cache.into_dispatch(), v_cache.into_dispatch(), start.into_dispatch());
    (Tensor::from_dispatch(q), Tensor::from_dispatch(k), Tensor::from_dispatch(v))
}

/// The kernel, apart from burn's `Tensor` (CubeCL has its own).
mod kernel {
    use cubecl::prelude::*;

    /// Unit `i` writes element `i` of `out [B, n, S, hd]` from `x [B, S, n·hd]` and the tables
    /// `[B, 1, S, hd]` (all contiguous).
    #[cube(launch, address_type = "dynamic")]
    pub(super) fn rotary_kernel<F: Float>(
        x: &Tensor<F>,
        cos: &Tensor<F>,
        sin: &Tensor<F>,
        out: &mut Tensor<F>,
        #[comptime] heads: usize,
        #[comptime] head_dim: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let i = ABSOLUTE_POS;
        if i >= out.len() {
            terminate!();
        }
        let seq = out.shape(2);
        let d = i % head_dim;
        let s = (i / head_dim) % seq;
        let h = (i / (head_dim * seq)) % heads;
        let b = i / (head_dim * seq * heads);
        let row = (b * seq + s) * heads * head_dim + h * head_dim;
        out[i] = rotated(x, row + d, d, cos, sin, (b * seq + s) * head_dim + d, head_dim);
    }

    /// `x[at]` rotated, element `d` of its head: `x[at]·cos[t] + rot·sin[t]` with `rot` its
    /// partner in the other half of the head, negated in the first half.
    #[cube]
    fn rotated<F: Float>(x: &Tensor<F>, at: usize, d: usize, cos: &Tensor<F>, sin: &Tensor<F>, t: usize, #[comptime] head_dim: usize) -> F {
        let partner = x[at - d + (d + head_dim / 2) % head_dim];
        x[at] * cos[t] + select(d < head_dim / 2, -partner, partner) * sin[t]
    }

    /// Unit `i` reads element `i` of `qkv [B, S, (heads + 2·kv_heads)·hd]` (contiguous, as are
    /// the tables `[B, 1, S, hd]`, `q [B, heads, S, hd]` and the caches `[B, kv_heads, C, hd]`):
    /// a q element is rotated into `q`, a k element rotated into `k_cache` and a v element copied
    /// into `v_cache`, both at position `start[0] + s`.
    #[cube(launch, address_type = "dynamic")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rotary_into_cache_kernel<F: Float>(
        qkv: &Tensor<F>,
        cos: &Tensor<F>,
        sin: &Tensor<F>,
        q: &mut Tensor<F>,
        k_cache: &mut Tensor<F>,
        v_cache: &mut Tensor<F>,
        start: &Tensor<f32>,
        #[comptime] heads: usize,
        #[comptime] kv_heads: usize,
        #[comptime] head_dim: usize,
        #[define(F)] _dtype: ElemType,
    ) {
        let i = ABSOLUTE_POS;
        if i >= qkv.len() {
            terminate!();
        }
        let seq = qkv.shape(1);
        let width = (heads + 2 * kv_heads) * head_dim;
        let row = i / width; // b · S + s
        let (b, s) = (row / seq, row % seq);
        let head = (i % width) / head_dim;
        let d = i % head_dim;
        let position = u32::cast_from(start[0]) as usize + s;
        let capacity = k_cache.shape(2);
        if head < heads + kv_heads {
            let value = rotated(qkv, i, d, cos, sin, row * head_dim + d, head_dim);
            if head < heads {
                q[((b * heads + head) * seq + s) * head_dim + d] = value;
            } else {
                k_cache[((b * kv_heads + head - heads) * capacity + position) * head_dim + d] = value;
            }
        } else {
            v_cache[((b * kv_heads + head - heads - kv_heads) * capacity + position) * head_dim + d] = qkv[i];
        }
    }
}
