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

use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::{FloatDType, Shape, Tensor, TensorData};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use cubecl::ir::AddressType;
use cubecl::prelude::{CubeCount, CubeDim};

use kernel::rotary_kernel;

/// Units per cube.
const UNITS: usize = 256;

/// `[B, n, S, hd]` for `x [B, S, n·hd]` and tables `[B, 1, S, hd]`.
fn rotated_shape(x: &Shape, cos: &Shape) -> Shape {
    let head_dim = cos[3];
    Shape::new([x[0], x[2] / head_dim, x[1], head_dim])
}

/// The rotary embedding of the heads of `x`, routed to each backend.
#[backend_extension(Cube, Flex, Fusion)]
pub trait RotaryOps: Backend {
    /// `x [B, S, n·hd]`, `cos` and `sin` `[B, 1, S, hd]` → `[B, n, S, hd]`, in `x`'s dtype.
    #[fusion(dtype = x, shape = rotated_shape(x, cos))]
    fn rotary_heads(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>) -> FloatTensor<Self>;
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
            CubeCount::new_1d(elements.div_ceil(UNITS) as u32),
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
}

/// The rotary embedding of the heads of `x [B, S, n·hd]` with tables `cos`, `sin`
/// `[B, 1, S, hd]` → `[B, n, S, hd]` (see the module).
///
/// All tensors must be without autodiff (the kernel has no backward pass) and of one dtype.
pub fn rotary_heads(x: Tensor<3>, cos: Tensor<4>, sin: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(Dispatch::rotary_heads(x.into_dispatch(), cos.into_dispatch(), sin.into_dispatch()))
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
        let partner = x[row + (d + head_dim / 2) % head_dim];
        let rotated = select(d < head_dim / 2, -partner, partner);
        let t = (b * seq + s) * head_dim + d;
        out[i] = x[row + d] * cos[t] + rotated * sin[t];
    }
}
