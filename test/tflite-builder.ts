/** The TFLite writer the exporter uses, for tests that build models by hand (see src/export/tflite/flatbuffer.ts). */
export {
  ACT,
  OP,
  options,
  SAME,
  TfliteBuilder,
  VALID,
  type ElementType,
  type OptionsSpec,
  type TensorSpec,
} from '../src/export/tflite/flatbuffer.js';
