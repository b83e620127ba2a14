#!/usr/bin/env bash
# Installs Deepfill-Paddle's dependencies into the current Python environment (run from anywhere).
# An installed paddle (paddlepaddle or paddlepaddle-gpu) is kept; without one, the CPU build is
# installed. OpenCV is added only when no cv2 is importable (AIStudio already ships opencv-python).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
"$PYTHON" -m pip install -q -r requirements.txt
if ! "$PYTHON" -c "import cv2" 2>/dev/null; then
  "$PYTHON" -m pip install -q "opencv-python-headless>=4.5"
fi
if "$PYTHON" -c "import paddle" 2>/dev/null; then
  echo "install: keeping the installed paddle $("$PYTHON" -c 'import paddle; print(paddle.__version__)' 2>/dev/null)"
else
  "$PYTHON" -m pip install -q "paddlepaddle==3.3.1"
fi
