/**
 * Training in onnxruntime: reverse-mode gradients as ONNX graphs, fake quantization with
 * learnable scales, losses and the Adam update, assembled into one graph per training step.
 */
export { GraphBuilder } from '../graph/builder.js';
export { buildGradientGraph, type GradientOptions } from './gradients.js';
export { registerGradient, gradientRule, differentiableOps } from './registry.js';
export type { GradientRule, GradContext, ForwardContext, RuleTable } from './rule.js';
export { fakeQuant, expandFakeQuant, isFakeQuant, lsqGradScale, QUANTFLOW_DOMAIN, type FakeQuantOptions } from './fake-quant.js';
export { adamUpdate, type AdamOptions, type AdamSlot } from './adam.js';
export { mseLoss } from './loss.js';
export { buildTrainingStep, Trainer, type TrainingStepOptions, type TrainingStepModel, type ParamIO } from './train-step.js';
export { checkGradients, type GradCheckOptions, type GradSample } from './gradcheck.js';
export { staticShapes } from './shapes.js';
