#!/usr/bin/python3
"""Reference detections of a TFLite SSD from an independent runtime: Arm NN (Debian's
python3-pyarmnn, CpuRef backend), for bench/ssd-armnn.ts to compare quantflow's float
import against.

Usage: /usr/bin/python3 bench/armnn-ssd.py <model.tflite> <image dir> <count> <out dir>

Each image is stretched to the model's input size (PIL bilinear) and fed as raw uint8. Writes
<out dir>/<image>.rgb (the exact HxWx3 uint8 pixels fed) and <out dir>/armnn.json (the four
outputs per image, and the Arm NN version)."""
import json
import os
import sys

import numpy as np
import pyarmnn as ann
from PIL import Image


def main(model_path, image_dir, count, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    parser = ann.ITfLiteParser()
    network = parser.CreateNetworkFromBinaryFile(model_path)
    graph = 0
    input_name = parser.GetSubgraphInputTensorNames(graph)[0]
    input_binding = parser.GetNetworkInputBindingInfo(graph, input_name)
    output_names = parser.GetSubgraphOutputTensorNames(graph)
    output_bindings = [parser.GetNetworkOutputBindingInfo(graph, n) for n in output_names]
    runtime = ann.IRuntime(ann.CreationOptions())
    optimized, _ = ann.Optimize(network, [ann.BackendId("CpuRef")], runtime.GetDeviceSpec(), ann.OptimizerOptions())
    net_id, _ = runtime.LoadNetwork(optimized)
    shape = input_binding[1].GetShape()
    height, width = shape[1], shape[2]

    files = sorted(f for f in os.listdir(image_dir) if f.lower().endswith((".jpg", ".jpeg", ".png")))[:count]
    results = []
    for f in files:
        image = Image.open(os.path.join(image_dir, f)).convert("RGB").resize((width, height), Image.BILINEAR)
        pixels = np.asarray(image, dtype=np.uint8)
        pixels.tofile(os.path.join(out_dir, f + ".rgb"))
        inputs = ann.make_input_tensors([input_binding], [pixels.reshape(1, height, width, 3)])
        outputs = ann.make_output_tensors(output_bindings)
        runtime.EnqueueWorkload(net_id, inputs, outputs)
        boxes, classes, scores, num = [a.ravel().tolist() for a in ann.workload_tensors_to_ndarray(outputs)]
        results.append({"file": f, "boxes": boxes, "classes": classes, "scores": scores, "count": num[0]})
        print(f, int(num[0]), "detections, best", classes[0], round(scores[0], 3), flush=True)
    with open(os.path.join(out_dir, "armnn.json"), "w") as out:
        json.dump({"armnn": ann.ARMNN_VERSION, "backend": "CpuRef", "height": height, "width": width, "images": results}, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
