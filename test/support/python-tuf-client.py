"""An independent TUF client run against an otad repository: python-tuf's ngclient.

Usage: python3 python-tuf-client.py BASE_URL TRUSTED_ROOT TARGET...
Prints one JSON line: per target, found or not (with its length and the downloaded file's SHA-256),
or the exception python-tuf raised for it. Exit status 0 unless the refresh itself failed (2).
"""
import hashlib
import json
import os
import shutil
import sys
import tempfile

from tuf.ngclient import Updater


def main() -> int:
    base, root_file, *targets = sys.argv[1:]
    work = tempfile.mkdtemp(prefix="python-tuf-")
    try:
        meta = os.path.join(work, "metadata")
        downloads = os.path.join(work, "downloads")
        os.mkdir(meta)
        os.mkdir(downloads)
        shutil.copy(root_file, os.path.join(meta, "root.json"))
        updater = Updater(metadata_dir=meta, metadata_base_url=base + "/metadata/", target_base_url=base + "/targets/", target_dir=downloads)
        try:
            updater.refresh()
        except Exception as error:  # noqa: BLE001 - reported to the test as it is
            print(json.dumps({"refresh": type(error).__name__, "message": str(error)}))
            return 2
        out = []
        for name in targets:
            try:
                info = updater.get_targetinfo(name)
                if info is None:
                    out.append({"target": name, "found": False})
                    continue
                path = updater.download_target(info)
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                out.append({"target": name, "found": True, "length": info.length, "sha256": digest})
            except Exception as error:  # noqa: BLE001
                out.append({"target": name, "error": type(error).__name__, "message": str(error)})
        print(json.dumps({"refresh": "ok", "targets": out}))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
