#!/usr/bin/env python3
"""Pack a directory (rootfs) into a one-layer docker-archive tar that `ctr images import` reads; the cluster's
pod sandbox (pause) image is made this way.   usage: mkimage.py ROOTFS OUT.tar REPO:TAG [--entrypoint JSON]"""

import argparse
import hashlib
import io
import json
import os
import tarfile
import tempfile

parser = argparse.ArgumentParser()
parser.add_argument("rootfs")
parser.add_argument("out")
parser.add_argument("ref")
parser.add_argument("--entrypoint")
args = parser.parse_args()
with tempfile.TemporaryFile() as layer:
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for name in sorted(os.listdir(args.rootfs)):
            tar.add(os.path.join(args.rootfs, name), arcname=name)
    size = layer.tell()
    layer.seek(0)
    digest = hashlib.sha256()
    for chunk in iter(lambda: layer.read(1 << 20), b""):
        digest.update(chunk)
    diff_id = "sha256:" + digest.hexdigest()
    config: dict = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
    }
    if args.entrypoint:
        config["config"]["Entrypoint"] = json.loads(args.entrypoint)
    config_bytes = json.dumps(config).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = digest.hexdigest() + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": [args.ref], "Layers": [layer_name]}]
    with tarfile.open(args.out, "w") as out:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))

        add(config_name, config_bytes)
        info = tarfile.TarInfo(layer_name)
        info.size = size
        layer.seek(0)
        out.addfile(info, layer)
        add("manifest.json", json.dumps(manifest).encode())
print(args.out, args.ref, diff_id)
