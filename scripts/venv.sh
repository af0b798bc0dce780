# Sourced by run.sh and test.sh: makes .venv (upgrading its pip first: the system pip 23.x trips on
# some packages' metadata) and installs the project into it with the extras given in $EXTRAS.
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${EXTRAS:-}"
