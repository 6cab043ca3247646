#!/usr/bin/python3
"""Runs .tflite models with Arm NN (CpuRef backend) on given input tensors.

The independent runtime of quantflow's TFLite export tests and `npm run bench:tflite`.
--jobs names a JSON file: a list of {"model": path, "inputs": [.npy path per subgraph input],
"out": folder, "outputs": optional tensor names to fetch instead of the model outputs (the model
cut there, for operators Arm NN refuses such as ARG_MAX)}. For each job the script writes output<j>.npy (output j as Arm NN returned it,
still quantized) and manifest.json (Arm NN version, the outputs' names, types, shapes and
quantization, seconds per inference) into its folder. Needs Debian's python3-pyarmnn,
libarmnn-cpuref-backend22 and libarmnntfliteparser22 (run it with /usr/bin/python3).
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run_tflite import ann, cut_model, describe, debian_version, fail  # noqa: E402


def run(job, runtime):
    parser = ann.ITfLiteParser()
    model = job['model']
    os.makedirs(job['out'], exist_ok=True)
    if job.get('outputs'):
        model = os.path.join(job['out'], 'cut.tflite')
        with open(job['model'], 'rb') as f:
            cut = cut_model(f.read(), job['outputs'], job['model'])
        with open(model, 'wb') as f:
            f.write(cut)
    try:
        network = parser.CreateNetworkFromBinaryFile(model)
    except RuntimeError as e:
        fail(f'{job["model"]}: Arm NN cannot parse it ({str(e).strip().splitlines()[0]})')
    input_names = parser.GetSubgraphInputTensorNames(0)
    if len(input_names) != len(job['inputs']):
        fail(f'{job["model"]}: {len(input_names)} inputs, {len(job["inputs"])} given')
    input_bindings = [parser.GetNetworkInputBindingInfo(0, n) for n in input_names]
    output_names = parser.GetSubgraphOutputTensorNames(0)
    output_bindings = [parser.GetNetworkOutputBindingInfo(0, n) for n in output_names]
    optimized, _ = ann.Optimize(network, [ann.BackendId('CpuRef')], runtime.GetDeviceSpec(), ann.OptimizerOptions())
    network_id, _ = runtime.LoadNetwork(optimized)
    tensors = [np.load(path) for path in job['inputs']]
    inputs = ann.make_input_tensors(input_bindings, tensors)
    outputs = ann.make_output_tensors(output_bindings)
    started = time.perf_counter()
    runtime.EnqueueWorkload(network_id, inputs, outputs)
    seconds = time.perf_counter() - started
    for j, result in enumerate(ann.workload_tensors_to_ndarray(outputs)):
        np.save(os.path.join(job['out'], f'output{j}.npy'), result)
    runtime.UnloadNetwork(network_id)
    manifest = {
        'armnn': {'library': ann.ARMNN_VERSION, 'debian': debian_version('libarmnn22'), 'backend': 'CpuRef'},
        'model': os.path.abspath(job['model']),
        'outputs': [describe(n, b[1]) for n, b in zip(output_names, output_bindings)],
        'seconds': seconds,
    }
    with open(os.path.join(job['out'], 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--jobs', required=True, help='JSON file: [{"model", "inputs", "out"}]')
    args = parser.parse_args()
    with open(args.jobs) as f:
        jobs = json.load(f)
    runtime = ann.IRuntime(ann.CreationOptions())
    for job in jobs:
        run(job, runtime)


if __name__ == '__main__':
    main()
