import { dequantize, qmaxOf, quantize, shiftChoices, sqnrDb, type QuantizedWeights } from './weights.js';

/**
 * Re-rounds a layer's weights with GPTQ, in place, on the steps PTQ chose; for 'shift', each
 * output channel also chooses between the two shifts around its own MSE step (under PTQ's
 * layer scale) by the output error of its GPTQ rounding, since weight error is a poor guide
 * to which grid GPTQ does better on (the finer one clips, the coarser one rounds coarsely).
 * `w`: the float weights, output channels first; `moments`: E[x·xᵀ] of the layer's input patches.
 */
export function gptqQuantize(w: Float32Array, quantized: QuantizedWeights, moments: Float64Array): void {
  const qmax = qmaxOf(quantized.bits);
  const channels = quantized.scale.length;
  if (quantized.granularity === 'shift') {
    const layerScale = quantized.layerScale!;
    const choices = shiftChoices(w, channels, layerScale, { bits: quantized.bits, maxShift: quantized.maxShift! });
    const scales = choices.map((k) => Float32Array.from(k, (kc) => layerScale * 2 ** -kc));
    const { q, chosen } = gptqRoundChoosing(w, scales, moments, qmax);
    quantized.shifts = Int32Array.from(chosen, (i, c) => choices[i]![c]!);
    quantized.scale = Float32Array.from(chosen, (i, c) => scales[i]![c]!);
    quantized.q = q;
  } else {
    // GPTQ rounds row by row on each row's step: a per-tensor step is every row's.
    const rows = w.length / Math.sqrt(moments.length);
    const steps = quantized.granularity === 'tensor' ? new Float32Array(rows).fill(quantized.scale[0]!) : quantized.scale;
    quantized.q = gptqRound(w, steps, moments, qmax);
  }
  quantized.sqnrDb = sqnrDb(w, dequantize(quantized));
}

/**
 * GPTQ rounding (Frantar et al., arXiv 2210.17323, after Optimal Brain Quantization): rounds
 * a [rows, cols] weight matrix on fixed per-row scales so that the layer's output error
 * E‖(Ŵ − W)·x‖² is small, not each weight's own error. Columns (inputs) are rounded one at a
 * time, most energetic input first; the error each rounding leaves is pushed onto the
 * columns not yet rounded, in the proportions that cancel it best given how the inputs
 * correlate (the inverse of H = E[x·xᵀ], x what one row reads: a convolution's input patch).
 * At 4 bits a 1x1 convolution's output error is a sum of hundreds of rounding errors, and
 * rounding each to nearest ignores that they add up.
 *
 * `w`: weights, rows (output channels) first; `scale`: one step per row; `moments`: E[x·xᵀ]
 * up to a factor, row-major [cols, cols]. Returns the integers on the narrow grid [−qmax, qmax].
 */
export function gptqRound(w: Float32Array, scale: Float32Array, moments: Float64Array, qmax: number): Int8Array {
  return gptqRoundChoosing(w, [scale], moments, qmax).q;
}

/**
 * GPTQ with a choice of step per row: each row is rounded on every candidate step (each
 * candidate holds one step per row) and keeps the one whose output error
 * (w − ŵ)ᵀH(w − ŵ) is least; `chosen[r]` says which. A step that clips a row's largest
 * weights can still win, since GPTQ pushes clipping error onto the other inputs too.
 */
export function gptqRoundChoosing(
  w: Float32Array,
  candidates: Float32Array[],
  moments: Float64Array,
  qmax: number,
): { q: Int8Array; chosen: Int32Array } {
  const rows = candidates[0]?.length ?? 0;
  const cols = w.length / rows;
  if (!Number.isInteger(cols) || moments.length !== cols * cols || candidates.some((c) => c.length !== rows))
    throw new RangeError(`gptqRound: ${w.length} weights, ${rows} scales and a ${moments.length}-element moment matrix do not fit`);
  const diagonal = Array.from({ length: cols }, (_, i) => moments[i * cols + i]!);
  const order = diagonal.map((_, i) => i).sort((a, b) => diagonal[b]! - diagonal[a]! || a - b);
  // A small ridge keeps H invertible where inputs are constant, zero or collinear.
  const ridge = DAMPING * (diagonal.reduce((s, d) => s + d, 0) / cols || 1);
  const h = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++)
    for (let j = 0; j < cols; j++) h[i * cols + j] = moments[order[i]! * cols + order[j]!]! + (i === j ? ridge : 0);
  const u = upperCholeskyOfInverse(h, cols);

  const work = new Float64Array(cols);
  const error = new Float64Array(cols);
  const q = new Int8Array(w.length);
  const chosen = new Int32Array(rows);
  const row = new Int8Array(cols);
  for (let r = 0; r < rows; r++) {
    let best = Infinity;
    candidates.forEach((scale, index) => {
      const s = scale[r]!;
      // A step an earlier candidate already tried for this row would round it the same way.
      if (candidates.slice(0, index).some((earlier) => earlier[r] === s)) return;
      for (let i = 0; i < cols; i++) work[i] = w[r * cols + order[i]!]!;
      for (let i = 0; i < cols; i++) {
        const qi = quantize(work[i]!, s, qmax);
        row[i] = qi;
        error[i] = w[r * cols + order[i]!]! - qi * s;
        const e = (work[i]! - qi * s) / u[i * cols + i]!;
        for (let j = i + 1; j < cols; j++) work[j]! -= e * u[i * cols + j]!;
      }
      // Only a choice needs the output error; h carries the ridge, which is not part of it.
      const cost = candidates.length > 1 ? quadraticForm(h, error, cols) - ridge * error.reduce((sum, e) => sum + e * e, 0) : 0;
      if (cost < best) {
        best = cost;
        chosen[r] = index;
        for (let i = 0; i < cols; i++) q[r * cols + order[i]!] = row[i]!;
      }
    });
  }
  return { q, chosen };
}

/** xᵀAx for A n×n row-major. */
function quadraticForm(a: Float64Array, x: Float64Array, n: number): number {
  let sum = 0;
  for (let i = 0; i < n; i++) {
    let dot = 0;
    for (let j = 0; j < n; j++) dot += a[i * n + j]! * x[j]!;
    sum += x[i]! * dot;
  }
  return sum;
}

/** Ridge added to H's diagonal, as a fraction of its mean (GPTQ's default). */
const DAMPING = 0.01;

/**
 * U upper triangular with UᵀU = H⁻¹ (H symmetric positive definite, n×n row-major): row i of
 * U holds how the error of input i spreads over the inputs after it.
 */
function upperCholeskyOfInverse(h: Float64Array, n: number): Float64Array {
  const l = cholesky(h, n);
  // L⁻¹ by forward substitution, column by column; then H⁻¹ = L⁻ᵀ·L⁻¹.
  const li = new Float64Array(n * n);
  for (let c = 0; c < n; c++) {
    li[c * n + c] = 1 / l[c * n + c]!;
    for (let i = c + 1; i < n; i++) {
      let sum = 0;
      for (let k = c; k < i; k++) sum += l[i * n + k]! * li[k * n + c]!;
      li[i * n + c] = -sum / l[i * n + i]!;
    }
  }
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j <= i; j++) {
      let sum = 0;
      for (let k = i; k < n; k++) sum += li[k * n + i]! * li[k * n + j]!;
      inv[i * n + j] = sum;
      inv[j * n + i] = sum;
    }
  // H⁻¹ = M·Mᵀ with M lower, so U = Mᵀ.
  const m = cholesky(inv, n);
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) u[i * n + j] = m[j * n + i]!;
  return u;
}

/** Lower-triangular L with L·Lᵀ = a (n×n row-major, symmetric positive definite). */
function cholesky(a: Float64Array, n: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j <= i; j++) {
      let sum = a[i * n + j]!;
      for (let k = 0; k < j; k++) sum -= l[i * n + k]! * l[j * n + k]!;
      if (i === j) {
        if (!(sum > 0)) throw new RangeError('gptqRound: the input moments are not positive definite');
        l[i * n + i] = Math.sqrt(sum);
      } else l[i * n + j] = sum / l[j * n + j]!;
    }
  return l;
}
