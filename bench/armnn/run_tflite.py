#!/usr/bin/python3
"""Runs a .tflite model with Arm NN (CpuRef backend) on the images of a folder.

The reference side of `npm run bench:armnn`: an independent TFLite runtime, so quantflow's
float import can be checked against what the original integer model computes. Needs
Debian's python3-pyarmnn, libarmnn-cpuref-backend22, libarmnntfliteparser22 and python3-pil
(run it with /usr/bin/python3).

Preprocessing: RGB, stretch-resize to the model's input size with Pillow's bilinear filter;
uint8 inputs take the raw pixels 0..255, int8 inputs pixel - 128, float inputs pixel / 127.5 - 1.

Writes into --out, for image k (0-based, in sorted path order): k_input.npy (the exact
tensor fed, NHWC) and k_output<j>.npy (output j as Arm NN returned it, still quantized),
plus manifest.json (versions, input/output names, types, shapes and quantization, the image
files and seconds per inference).

Arm NN's parser binds only a subgraph's own outputs and refuses the whole model when any
operator is unsupported (Arm NN 20.08 has no ARG_MAX). --outputs names tensors to fetch
instead: the script then writes a copy of the model cut down to the operators those tensors
need, with them as the outputs (cut.tflite in --out), and runs that.
"""
import argparse
import json
import logging
import os
import struct
import subprocess
import sys
import time

import numpy as np
from PIL import Image

# pyarmnn warns on import about each parser Debian leaves out (Caffe, ONNX, TF); only TFLite's is used.
logging.getLogger('pyarmnn').setLevel(logging.ERROR)
import pyarmnn as ann  # noqa: E402

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
DATA_TYPES = {
    ann.DataType_Float32: ('float32', np.float32),
    ann.DataType_QAsymmU8: ('uint8', np.uint8),
    ann.DataType_QAsymmS8: ('int8', np.int8),
    ann.DataType_Signed32: ('int32', np.int32),
    ann.DataType_Boolean: ('bool', np.bool_),
}


def fail(message):
    print(f'run_tflite.py: {message}', file=sys.stderr)
    sys.exit(2)


# --- reading and patching the TFLite flatbuffer (schema fields by index) -------------------
def u32(b, pos):
    return struct.unpack_from('<I', b, pos)[0]


def field(b, table, k):
    """Absolute position of field k of the table at `table`, or None when absent."""
    vtable = table - struct.unpack_from('<i', b, table)[0]
    size = struct.unpack_from('<H', b, vtable)[0]
    if 4 + 2 * k >= size:
        return None
    offset = struct.unpack_from('<H', b, vtable + 4 + 2 * k)[0]
    return table + offset if offset else None


def vector(b, table, k):
    """(position of element 0, length) of the vector in field k; (0, 0) when absent."""
    pos = field(b, table, k)
    if pos is None:
        return 0, 0
    start = pos + u32(b, pos)
    return start + 4, u32(b, start)


def int_vector(b, table, k):
    start, n = vector(b, table, k)
    return list(struct.unpack_from(f'<{n}i', b, start)) if n else []


def tables(b, table, k):
    start, n = vector(b, table, k)
    return [start + 4 * i + u32(b, start + 4 * i) for i in range(n)]


def cut_model(data, wanted, source):
    """The model with subgraph 0's outputs replaced by the tensors named in `wanted`, keeping
    only the operators they depend on (in their original order)."""
    b = bytearray(data)
    subgraph = tables(b, u32(b, 0), 2)[0]
    names = {}
    for i, tensor in enumerate(tables(b, subgraph, 0)):
        start, n = vector(b, tensor, 3)
        names[bytes(b[start:start + n]).decode()] = i
    missing = [w for w in wanted if w not in names]
    if missing:
        fail(f'{source}: no tensor named {", ".join(missing)} in subgraph 0')
    outputs = [names[w] for w in wanted]
    operators = tables(b, subgraph, 3)
    needed = set(outputs)
    keep = []
    for op in reversed(operators):
        if needed.intersection(int_vector(b, op, 2)):
            keep.append(op)
            needed.update(i for i in int_vector(b, op, 1) if i >= 0)
    keep.reverse()
    # Compact the operators vector in place: elements move towards its start, so their
    # (unsigned, forward) offsets to the operator tables stay valid.
    start, _ = vector(b, subgraph, 3)
    for j, op in enumerate(keep):
        struct.pack_into('<I', b, start + 4 * j, op - (start + 4 * j))
    struct.pack_into('<I', b, start - 4, len(keep))
    # The new outputs vector goes at the end of the file, forward of the field that points to it.
    b.extend(b'\0' * (-len(b) % 4))
    at = len(b)
    b.extend(struct.pack(f'<I{len(outputs)}i', len(outputs), *outputs))
    pos = field(b, subgraph, 2)
    struct.pack_into('<I', b, pos, at - pos)
    return bytes(b)


# --- running -------------------------------------------------------------------------------
def list_images(folder):
    found = []
    for root, _, files in os.walk(folder):
        found.extend(os.path.join(root, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS))
    return sorted(found)


def pixels(path, shape, dtype):
    """The input tensor [1, H, W, 3] for one image."""
    _, height, width, channels = shape
    if channels != 3:
        fail(f'the model input has {channels} channels; this script feeds RGB images only')
    with Image.open(path) as image:
        rgb = np.asarray(image.convert('RGB').resize((width, height), Image.BILINEAR), dtype=np.float32)
    if dtype == np.uint8:
        return rgb.astype(np.uint8)[None]
    if dtype == np.int8:
        return (rgb - 128).astype(np.int8)[None]
    return (rgb / 127.5 - 1)[None].astype(np.float32)


def describe(name, info):
    kind = info.GetDataType()
    if kind not in DATA_TYPES:
        fail(f'tensor {name} has Arm NN data type {kind}, which this script does not handle')
    shape = info.GetShape()
    return {
        'name': name,
        'dtype': DATA_TYPES[kind][0],
        'shape': [shape[i] for i in range(shape.GetNumDimensions())],
        'scale': info.GetQuantizationScale(),
        'zeroPoint': info.GetQuantizationOffset(),
    }


def debian_version(package):
    try:
        return subprocess.run(['dpkg-query', '-W', '-f', '${Version}', package],
                              capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', required=True, help='the .tflite file')
    parser.add_argument('--images', required=True, help='folder of images (any depth)')
    parser.add_argument('--out', required=True, help='folder for the .npy files and manifest.json')
    parser.add_argument('--limit', type=int, default=10, help='number of images (first in sorted order)')
    parser.add_argument('--outputs', help='comma-separated tensor names to fetch instead of the model outputs')
    args = parser.parse_args()

    with open(args.model, 'rb') as f:
        data = f.read()
    os.makedirs(args.out, exist_ok=True)
    model_path = args.model
    wanted = [w for w in (args.outputs or '').split(',') if w]
    if wanted:
        model_path = os.path.join(args.out, 'cut.tflite')
        with open(model_path, 'wb') as f:
            f.write(cut_model(data, wanted, args.model))

    tflite = ann.ITfLiteParser()
    try:
        network = tflite.CreateNetworkFromBinaryFile(model_path)
    except RuntimeError as e:
        fail(f'{args.model}: Arm NN cannot parse it ({str(e).strip().splitlines()[0]}); '
             'name the tensors before the refused operator with --outputs')
    input_names = tflite.GetSubgraphInputTensorNames(0)
    if len(input_names) != 1:
        fail(f'{args.model}: {len(input_names)} inputs; this script feeds models with one image input')
    input_binding = tflite.GetNetworkInputBindingInfo(0, input_names[0])
    output_names = tflite.GetSubgraphOutputTensorNames(0)
    output_bindings = [tflite.GetNetworkOutputBindingInfo(0, n) for n in output_names]

    runtime = ann.IRuntime(ann.CreationOptions())
    optimized, _ = ann.Optimize(network, [ann.BackendId('CpuRef')], runtime.GetDeviceSpec(), ann.OptimizerOptions())
    network_id, _ = runtime.LoadNetwork(optimized)

    input_desc = describe(input_names[0], input_binding[1])
    input_dtype = DATA_TYPES[input_binding[1].GetDataType()][1]
    images = list_images(args.images)[:args.limit]
    if not images:
        fail(f'{args.images}: no images')
    manifest = {
        'armnn': {'library': ann.ARMNN_VERSION, 'debian': debian_version('libarmnn22'), 'backend': 'CpuRef'},
        'model': os.path.abspath(args.model),
        'cutModel': os.path.abspath(model_path) if wanted else None,
        'input': input_desc,
        'outputs': [describe(n, b[1]) for n, b in zip(output_names, output_bindings)],
        'images': [],
    }
    for k, path in enumerate(images):
        tensor = pixels(path, input_desc['shape'], input_dtype)
        np.save(os.path.join(args.out, f'{k}_input.npy'), tensor)
        inputs = ann.make_input_tensors([input_binding], [tensor])
        outputs = ann.make_output_tensors(output_bindings)
        started = time.perf_counter()
        runtime.EnqueueWorkload(network_id, inputs, outputs)
        seconds = time.perf_counter() - started
        for j, result in enumerate(ann.workload_tensors_to_ndarray(outputs)):
            np.save(os.path.join(args.out, f'{k}_output{j}.npy'), result)
        # Rewritten after every image, so an interrupted run still leaves the images done so far.
        manifest['images'].append({'file': os.path.abspath(path), 'seconds': seconds})
        with open(os.path.join(args.out, 'manifest.json.tmp'), 'w') as f:
            json.dump(manifest, f, indent=1)
        os.replace(os.path.join(args.out, 'manifest.json.tmp'), os.path.join(args.out, 'manifest.json'))
        print(f'{k + 1}/{len(images)} {os.path.basename(path)} {seconds:.1f} s', file=sys.stderr, flush=True)



if __name__ == '__main__':
    main()
