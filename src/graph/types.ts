/**
 * The one in-memory graph of quantflow. Operators, attributes and tensor layouts have
 * exactly ONNX semantics (default domain, opset given by `opset`), so a graph can be written
 * to `.onnx` and run by onnxruntime without translation. Importers produce it; passes
 * transform it.
 */

/** Element types we hold in memory. Names follow ONNX's TensorProto.DataType. */
export type DataType =
  | 'float32'
  | 'float16'
  | 'float64'
  | 'int4'
  | 'uint4'
  | 'int8'
  | 'uint8'
  | 'int16'
  | 'uint16'
  | 'int32'
  | 'uint32'
  | 'int64'
  | 'uint64'
  | 'bool';

/**
 * Typed storage for each element type. int4/uint4 are held unpacked, one element per byte
 * (Int8Array/Uint8Array); packing happens only when an ONNX file is written. float16 is held
 * as its raw bits.
 */
export type TensorStorage =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array;

/** A constant tensor (initializer or attribute value). `data.length` equals the product of `dims`. */
export interface TensorData {
  dataType: DataType;
  dims: number[];
  data: TensorStorage;
}

/** A dimension: a fixed size, a symbolic name (dynamic), or unknown. */
export type Dim = number | string | null;

/** Type and shape of a graph value. `shape` undefined means the rank is unknown. */
export interface ValueInfo {
  name: string;
  dataType: DataType;
  shape?: Dim[];
}

export type AttributeValue =
  | { type: 'int'; value: number }
  | { type: 'ints'; value: number[] }
  | { type: 'float'; value: number }
  | { type: 'floats'; value: number[] }
  | { type: 'string'; value: string }
  | { type: 'strings'; value: string[] }
  | { type: 'tensor'; value: TensorData };

export interface Node {
  /** Unique within the graph; importers invent names when the source has none. */
  name: string;
  opType: string;
  /** '' is the default ONNX domain. */
  domain: string;
  /** '' marks an omitted optional input, as in ONNX. */
  inputs: string[];
  outputs: string[];
  attributes: Record<string, AttributeValue>;
}

export interface Graph {
  name: string;
  /** Topologically ordered (see `topologicalSort`). */
  nodes: Node[];
  initializers: Map<string, TensorData>;
  /** Runtime inputs only; initializers are not listed here. */
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  /** Known types and shapes of intermediate values. */
  valueInfo: Map<string, ValueInfo>;
}

/** A model: the graph plus what the ONNX file carries around it. */
export interface Model {
  graph: Graph;
  /** Default-domain opset version. */
  opset: number;
  /** Other operator domains in use, e.g. `com.microsoft`. */
  extraOpsets?: Record<string, number>;
  producerName: string;
  /** Free-form key/value metadata; importers record source quantization parameters here. */
  metadata: Record<string, string>;
}
