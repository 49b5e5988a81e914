"""Print the oldest Keras a setup.cfg allows, as a pip pin.

`python .ci/oldest_keras.py setup.cfg` reads `keras>=X` (with any upper
bound) from `[options] install_requires` and prints `keras==X`, for
`.ci/check_wheel`, which runs the built wheel with it.
"""

import configparser
import re
import sys


def oldest_keras(path):
    config = configparser.ConfigParser()
    if not config.read(path):
        raise SystemExit(f"oldest_keras: cannot read {path}")
    requirements = config["options"]["install_requires"]
    floors = re.findall(r"^\s*keras\s*>=\s*([\d.]+)", requirements, re.M)
    if len(floors) != 1:
        raise SystemExit(
            f"oldest_keras: {path} must require keras>=X once; "
            f"install_requires is {requirements!r}"
        )
    return f"keras=={floors[0]}"


if __name__ == "__main__":
    print(oldest_keras(sys.argv[1]))
