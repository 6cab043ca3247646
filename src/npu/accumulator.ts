import type { Grid } from '../quantization/grid.js';
import type { NpuLayer, TensorInfo } from './types.js';

/**
 * The largest |accumulator| a layer can reach on any input of its grids: what the profile's
 * accumulatorBits must hold (the lowering refuses a layer where it does not) and what the
 * integer ONNX model needs to choose an exact requantization. 8-bit activations keep it
 * within 32 bits for any realistic layer; 16-bit activations multiply it by 256.
 */
export function accumulatorBound(layer: NpuLayer, tensors: Record<string, TensorInfo>): number {
  const reach = (name: string) => centeredReach(tensors[name]!.grid);
  switch (layer.op) {
    case 'conv':
    case 'fc': {
      const [outC] = layer.weights.shape as [number];
      const per = layer.weights.data.length / outC;
      const x = reach(layer.inputs[0]!);
      let bound = 0;
      for (let c = 0; c < outC; c++) {
        let sum = 0;
        for (let i = c * per; i < (c + 1) * per; i++) sum += Math.abs(layer.weights.data[i]!);
        bound = Math.max(bound, sum * x + Math.abs(layer.bias?.data[c] ?? 0));
      }
      return bound;
    }
    case 'mul':
      return reach(layer.inputs[0]!) * reach(layer.inputs[1]!);
    case 'avgpool':
      return Math.max(...layer.windows.map((w) => w.count)) * reach(layer.inputs[0]!);
    case 'tflite-avgpool': {
      // Sums of stored values, whose magnitude reaches half the grid's level count.
      const g = tensors[layer.inputs[0]!]!.grid;
      return layer.kernel[0] * layer.kernel[1] * ((g.qmax - g.qmin + 1) / 2);
    }
    case 'tflite-mean': {
      const [, , h, w] = tensors[layer.inputs[0]!]!.shape as [number, number, number, number];
      return h * w * reach(layer.inputs[0]!);
    }
    default:
      return 0;
  }
}

/** Largest |q − z| on a grid. */
function centeredReach(g: Grid): number {
  return Math.max(g.zeroPoint - g.qmin, g.qmax - g.zeroPoint);
}
