#!/usr/bin/env bash
# Installs the embedded default data set (Debian's dataset-fashion-mnist) when it is missing and
# apt is usable; otherwise says where else the data can come from. Never fails the install.
set -u
DIR=/usr/share/datasets/fashion-mnist
if ls "$DIR"/train-images-idx3-ubyte* >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; }; then
  echo "installing Fashion-MNIST (dataset-fashion-mnist) with apt ..."
  $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null && exit 0
fi
echo "note: Fashion-MNIST not found in $DIR and apt could not install it;" \
     "set data.root=/path/with/fashion-mnist or let torchvision download it (data.download=true)." >&2
exit 0
