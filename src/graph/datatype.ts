import type { DataType } from './types.js';

/** ONNX TensorProto.DataType codes of the element types quantflow holds. */
const CODES: Record<DataType, number> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  uint16: 4,
  int16: 5,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  float64: 11,
  uint32: 12,
  uint64: 13,
  uint4: 21,
  int4: 22,
};

const BY_CODE = new Map<number, DataType>(Object.entries(CODES).map(([k, v]) => [v, k as DataType]));

export function onnxTypeCode(t: DataType): number {
  return CODES[t];
}

/** The DataType for an ONNX code, or undefined for types quantflow does not handle (string, bfloat16, float8...). */
export function dataTypeFromCode(code: number): DataType | undefined {
  return BY_CODE.get(code);
}
