//! The arithmetic of a merge: element types and the per-element kernels.
//!
//! Every method is computed element by element in a wider accumulator (f32, or f64 when the
//! inputs or the output are f64), visiting the models in a fixed order, and rounded once to
//! the output type (to nearest, ties to even). The order and the operations mirror
//! mergekit's linear merge on CPU, so that merges agree bit for bit: the accumulator starts
//! at zero and takes one fused multiply-add per model (`acc = x * w + acc`, as torch's
//! `addcmul_` does), then is divided by the sum of the weights in the accumulator type,
//! summed in the order torch's `sum` uses for a short row (see [`weight_sum`]).
//!
//! Results never depend on the thread count or the CPU: each element is computed alone, and
//! the FMA-enabled path (chosen at run time on x86-64) computes exactly what the portable
//! path computes, since a fused multiply-add is correctly rounded either way.

use safetensors::Dtype;

/// Elements a block holds: the unit of the inner, vectorizable loops.
const BLOCK: usize = 512;

/// A floating-point element type a merge reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatType {
    /// IEEE binary64.
    F64,
    /// IEEE binary32.
    F32,
    /// bfloat16.
    BF16,
    /// IEEE binary16.
    F16,
}

impl FloatType {
    /// The merge-able type stored as `dtype`, if it is one.
    pub fn from_dtype(dtype: Dtype) -> Option<Self> {
        Some(match dtype {
            Dtype::F64 => FloatType::F64,
            Dtype::F32 => FloatType::F32,
            Dtype::BF16 => FloatType::BF16,
            Dtype::F16 => FloatType::F16,
            _ => return None,
        })
    }

    /// The safetensors dtype.
    pub fn dtype(self) -> Dtype {
        match self {
            FloatType::F64 => Dtype::F64,
            FloatType::F32 => Dtype::F32,
            FloatType::BF16 => Dtype::BF16,
            FloatType::F16 => Dtype::F16,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            FloatType::F64 => 8,
            FloatType::F32 => 4,
            FloatType::BF16 | FloatType::F16 => 2,
        }
    }

    /// The type named as torch and config.json name it (`"bfloat16"`).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "float64" => FloatType::F64,
            "float32" => FloatType::F32,
            "bfloat16" => FloatType::BF16,
            "float16" => FloatType::F16,
            _ => return None,
        })
    }

    /// The name [`FloatType::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            FloatType::F64 => "float64",
            FloatType::F32 => "float32",
            FloatType::BF16 => "bfloat16",
            FloatType::F16 => "float16",
        }
    }
}

/// The names [`FloatType::parse`] accepts, for messages.
pub const FLOAT_TYPE_NAMES: &str = "\"float32\", \"bfloat16\", \"float16\" or \"float64\"";

/// f32 to bfloat16, rounding to nearest with ties to even; every NaN becomes the one
/// quiet NaN `0x7fc0` (as torch's `c10::BFloat16` does).
#[inline(always)]
pub fn bf16_bits(value: f32) -> u16 {
    if value.is_nan() {
        return 0x7fc0;
    }
    let bits = value.to_bits();
    let bias = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(bias) >> 16) as u16
}

/// bfloat16 to f32 (exact).
#[inline(always)]
pub fn bf16_value(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// The accumulator type: f32 or f64.
pub(crate) trait Real:
    Copy + Default + std::ops::Add<Output = Self> + std::ops::Sub<Output = Self>
{
    fn fused(self, factor: Self, addend: Self) -> Self;
    fn divide(self, by: Self) -> Self;
    fn decode(kind: FloatType, bytes: &[u8], out: &mut [Self]);
    fn encode(kind: FloatType, values: &[Self], out: &mut [u8]);
}

impl Real for f32 {
    #[inline(always)]
    fn fused(self, factor: f32, addend: f32) -> f32 {
        self.mul_add(factor, addend)
    }

    #[inline(always)]
    fn divide(self, by: f32) -> f32 {
        self / by
    }

    #[inline(always)]
    fn decode(kind: FloatType, bytes: &[u8], out: &mut [f32]) {
        match kind {
            FloatType::BF16 => {
                for (value, raw) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *value = bf16_value(u16::from_le_bytes([raw[0], raw[1]]));
                }
            }
            FloatType::F32 => {
                for (value, raw) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *value = f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
                }
            }
            FloatType::F16 => {
                for (value, raw) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *value = half::f16::from_le_bytes([raw[0], raw[1]]).to_f32();
                }
            }
            // The accumulator is f64 whenever an f64 is involved; kept total for safety.
            FloatType::F64 => {
                for (value, raw) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                    let mut word = [0u8; 8];
                    word.copy_from_slice(raw);
                    *value = f64::from_le_bytes(word) as f32;
                }
            }
        }
    }

    #[inline(always)]
    fn encode(kind: FloatType, values: &[f32], out: &mut [u8]) {
        match kind {
            FloatType::BF16 => {
                for (value, raw) in values.iter().zip(out.chunks_exact_mut(2)) {
                    raw.copy_from_slice(&bf16_bits(*value).to_le_bytes());
                }
            }
            FloatType::F32 => {
                for (value, raw) in values.iter().zip(out.chunks_exact_mut(4)) {
                    raw.copy_from_slice(&value.to_le_bytes());
                }
            }
            FloatType::F16 => {
                for (value, raw) in values.iter().zip(out.chunks_exact_mut(2)) {
                    raw.copy_from_slice(&half::f16::from_f32(*value).to_le_bytes());
                }
            }
            FloatType::F64 => {
                for (value, raw) in values.iter().zip(out.chunks_exact_mut(8)) {
                    raw.copy_from_slice(&f64::from(*value).to_le_bytes());
                }
            }
        }
    }
}

impl Real for f64 {
    #[inline(always)]
    fn fused(self, factor: f64, addend: f64) -> f64 {
        self.mul_add(factor, addend)
    }

    #[inline(always)]
    fn divide(self, by: f64) -> f64 {
        self / by
    }

    fn decode(kind: FloatType, bytes: &[u8], out: &mut [f64]) {
        match kind {
            FloatType::F64 => {
                for (value, raw) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                    let mut word = [0u8; 8];
                    word.copy_from_slice(raw);
                    *value = f64::from_le_bytes(word);
                }
            }
            narrow => {
                let mut block = [0f32; BLOCK];
                for (values, raw) in out
                    .chunks_mut(BLOCK)
                    .zip(bytes.chunks(BLOCK * narrow.size()))
                {
                    let block = &mut block[..values.len()];
                    f32::decode(narrow, raw, block);
                    for (wide, value) in values.iter_mut().zip(block.iter()) {
                        *wide = f64::from(*value);
                    }
                }
            }
        }
    }

    fn encode(kind: FloatType, values: &[f64], out: &mut [u8]) {
        for (value, raw) in values.iter().zip(out.chunks_exact_mut(kind.size())) {
            match kind {
                FloatType::F64 => raw.copy_from_slice(&value.to_le_bytes()),
                // One rounding, f64 to the output type (through f32 would round twice).
                FloatType::F32 => raw.copy_from_slice(&(*value as f32).to_le_bytes()),
                FloatType::BF16 => raw.copy_from_slice(&half::bf16::from_f64(*value).to_le_bytes()),
                FloatType::F16 => raw.copy_from_slice(&half::f16::from_f64(*value).to_le_bytes()),
            }
        }
    }
}

/// The sum of the weights in the accumulator type, in the order torch's CPU `sum` adds a
/// short contiguous row (`row_sum` in ATen's SumKernel.cpp): four interleaved partial sums,
/// the leftover values added to the first, then the partials added left to right. For
/// fewer than 8 values this is exactly torch's result (checked against torch 2.15); longer
/// rows go through torch's vectorized path, whose order depends on the CPU.
pub(crate) fn weight_sum<R: Real>(weights: &[R]) -> R {
    let rows = weights.len() / 4;
    let mut partial = [R::default(); 4];
    for row in weights.chunks_exact(4) {
        for (sum, weight) in partial.iter_mut().zip(row) {
            *sum = *sum + *weight;
        }
    }
    for weight in &weights[rows * 4..] {
        partial[0] = partial[0] + *weight;
    }
    partial[1..]
        .iter()
        .fold(partial[0], |sum, part| sum + *part)
}

/// How the models combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// `sum(w_i * x_i) / sum(w_i)`.
    Normalized,
    /// `sum(w_i * x_i)`.
    Sum,
    /// `base + sum(w_i * (x_i - base))`; the base is the first input.
    Delta,
}

/// One merge's per-element computation: its inputs' element type, the output type and the
/// coefficients, in model order.
#[derive(Debug, Clone)]
pub struct Kernel {
    combine: Combine,
    input: FloatType,
    output: FloatType,
    weights32: Vec<f32>,
    weights64: Vec<f64>,
    wide: bool,
}

impl Kernel {
    /// A kernel over models weighted `weights` (without the base for [`Combine::Delta`]).
    pub fn new(combine: Combine, weights: &[f64], input: FloatType, output: FloatType) -> Self {
        Kernel {
            combine,
            input,
            output,
            weights32: weights.iter().map(|w| *w as f32).collect(),
            weights64: weights.to_vec(),
            wide: input == FloatType::F64 || output == FloatType::F64,
        }
    }

    /// How many input slices [`Kernel::apply`] takes.
    pub fn arity(&self) -> usize {
        self.weights32.len() + usize::from(self.combine == Combine::Delta)
    }

    /// The element type read.
    pub fn input(&self) -> FloatType {
        self.input
    }

    /// The element type written.
    pub fn output(&self) -> FloatType {
        self.output
    }

    /// Computes `out` (output-typed bytes) from `inputs` (input-typed bytes, the same
    /// elements of each model, the base first for [`Combine::Delta`]).
    pub fn apply(&self, inputs: &[&[u8]], out: &mut [u8]) {
        debug_assert_eq!(inputs.len(), self.arity());
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has the features the function is compiled for.
            unsafe { self.apply_avx2(inputs, out) };
            return;
        }
        self.apply_portable(inputs, out);
    }

    /// [`Kernel::apply`] compiled with AVX2 and FMA: the same operations, vectorized.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn apply_avx2(&self, inputs: &[&[u8]], out: &mut [u8]) {
        self.apply_portable(inputs, out);
    }

    #[inline(always)]
    fn apply_portable(&self, inputs: &[&[u8]], out: &mut [u8]) {
        if self.wide {
            self.blocks::<f64>(&self.weights64, inputs, out);
        } else {
            self.blocks::<f32>(&self.weights32, inputs, out);
        }
    }

    #[inline(always)]
    fn blocks<R: Real>(&self, weights: &[R], inputs: &[&[u8]], out: &mut [u8]) {
        let (in_size, out_size) = (self.input.size(), self.output.size());
        let elements = out.len() / out_size;
        let denominator = weight_sum(weights);
        let mut acc = [R::default(); BLOCK];
        let mut values = [R::default(); BLOCK];
        let mut base = [R::default(); BLOCK];
        let mut start = 0;
        while start < elements {
            let count = BLOCK.min(elements - start);
            let (from, to) = (start * in_size, (start + count) * in_size);
            let acc = &mut acc[..count];
            acc.fill(R::default());
            let values = &mut values[..count];
            let base = &mut base[..count];
            let models = match self.combine {
                Combine::Delta => {
                    R::decode(self.input, &inputs[0][from..to], base);
                    &inputs[1..]
                }
                Combine::Normalized | Combine::Sum => inputs,
            };
            for (input, weight) in models.iter().zip(weights) {
                R::decode(self.input, &input[from..to], values);
                match self.combine {
                    Combine::Delta => {
                        for ((sum, value), origin) in
                            acc.iter_mut().zip(values.iter()).zip(base.iter())
                        {
                            *sum = (*value - *origin).fused(*weight, *sum);
                        }
                    }
                    Combine::Normalized | Combine::Sum => {
                        for (sum, value) in acc.iter_mut().zip(values.iter()) {
                            *sum = value.fused(*weight, *sum);
                        }
                    }
                }
            }
            match self.combine {
                Combine::Normalized => {
                    for sum in acc.iter_mut() {
                        *sum = sum.divide(denominator);
                    }
                }
                Combine::Delta => {
                    for (sum, origin) in acc.iter_mut().zip(base.iter()) {
                        *sum = *origin + *sum;
                    }
                }
                Combine::Sum => {}
            }
            R::encode(
                self.output,
                acc,
                &mut out[start * out_size..(start + count) * out_size],
            );
            start += count;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bf16_bytes(values: &[f32]) -> Vec<u8> {
        values
            .iter()
            .flat_map(|v| bf16_bits(*v).to_le_bytes())
            .collect()
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn f32_values(bytes: &[u8]) -> Vec<f32> {
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        // 1 + 2^-8 lies halfway between 1 and the next bf16 (1 + 2^-7): ties go to even (1).
        assert_eq!(bf16_bits(1.0 + 2f32.powi(-8)), 0x3f80);
        // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up to even.
        assert_eq!(bf16_bits(1.0 + 3.0 * 2f32.powi(-8)), 0x3f82);
        // Just above half rounds up.
        assert_eq!(bf16_bits(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(bf16_bits(f32::NAN), 0x7fc0);
        assert_eq!(bf16_bits(f32::INFINITY), 0x7f80);
        assert_eq!(bf16_bits(f32::MAX), 0x7f80, "rounds past the largest bf16");
        assert_eq!(bf16_bits(-2.5), 0xc020);
        for bits in [0x0000u16, 0x3f80, 0xbf80, 0x0001, 0x7f7f, 0x1234, 0xc2f7] {
            assert_eq!(
                bf16_bits(bf16_value(bits)),
                bits,
                "bf16 round trip of {bits:#x}"
            );
        }
    }

    #[test]
    fn weight_sums_follow_torch_row_order() {
        // With five values the fifth joins the first partial before the others: (a + e) + b
        // + c + d. These values make that order visible (a left-to-right sum differs).
        let values = [1.0e8f32, 1.0, -1.0e8, 1.0, 1.0];
        let sequential = values.iter().fold(0f32, |s, v| s + v);
        let torch = ((values[0] + values[4]) + values[1] + values[2]) + values[3];
        assert_ne!(sequential, torch);
        assert_eq!(weight_sum(&values), torch);
        assert_eq!(weight_sum(&[1.0f32, 0.2, 0.1]), (1.0f32 + 0.2) + 0.1);
    }

    #[test]
    fn linear_is_fused_and_normalized() {
        let a = [1.5f32, -2.0, 3.25, 1.0e-3];
        let b = [0.1f32, 7.0, -3.25, 2.0e-3];
        let (wa, wb) = (0.7f64, 0.2f64);
        let kernel = Kernel::new(
            Combine::Normalized,
            &[wa, wb],
            FloatType::F32,
            FloatType::F32,
        );
        let mut out = vec![0u8; 16];
        kernel.apply(&[&f32_bytes(&a), &f32_bytes(&b)], &mut out);
        let denominator = wa as f32 + wb as f32;
        let expected: Vec<f32> = a
            .iter()
            .zip(&b)
            .map(|(x, y)| y.mul_add(wb as f32, x.mul_add(wa as f32, 0.0)) / denominator)
            .collect();
        assert_eq!(f32_values(&out), expected);
    }

    #[test]
    fn task_arithmetic_adds_weighted_deltas_to_the_base() {
        let base = [1.0f32, 2.0, -4.0];
        let x = [2.0f32, 2.0, 0.0];
        let y = [1.0f32, 6.0, -8.0];
        let kernel = Kernel::new(Combine::Delta, &[0.5, 0.25], FloatType::F32, FloatType::F32);
        let mut out = vec![0u8; 12];
        kernel.apply(
            &[&f32_bytes(&base), &f32_bytes(&x), &f32_bytes(&y)],
            &mut out,
        );
        // base + 0.5 (x - base) + 0.25 (y - base), exact in binary.
        assert_eq!(f32_values(&out), vec![1.5, 3.0, -3.0]);
    }

    #[test]
    fn long_tensors_cross_blocks_and_bf16_self_merges_are_exact() {
        let values: Vec<f32> = (0..3 * BLOCK + 17)
            .map(|i| bf16_value(bf16_bits((i as f32 * 0.37).sin() * 3.0)))
            .collect();
        let bytes = bf16_bytes(&values);
        let kernel = Kernel::new(
            Combine::Normalized,
            &[1.0, 0.2, 0.1],
            FloatType::BF16,
            FloatType::BF16,
        );
        let mut out = vec![0u8; bytes.len()];
        kernel.apply(&[&bytes, &bytes, &bytes], &mut out);
        assert_eq!(out, bytes);
        let sum = Kernel::new(Combine::Sum, &[1.0, 1.0], FloatType::BF16, FloatType::F32);
        let mut doubled = vec![0u8; values.len() * 4];
        sum.apply(&[&bytes, &bytes], &mut doubled);
        let expected: Vec<f32> = values.iter().map(|v| v * 2.0).collect();
        assert_eq!(f32_values(&doubled), expected);
    }
}
