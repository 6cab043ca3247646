/** Operator domain of quantflow's marker nodes, which are not ONNX operators (see fake-quant.ts). */
export const QUANTFLOW_DOMAIN = 'com.quantflow';

/** The marker operators of that domain. */
export type MarkerOp = 'FakeQuant';
