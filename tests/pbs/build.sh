#!/bin/bash
# Build + install OpenPBS from an unpacked source tree on Debian bookworm, idempotently
# (called by tests/pbs/server.sh up when /opt/pbs/bin/qsub does not work).
# Verified: OpenPBS v23.06.06 on Debian 12 / gcc 12 / python 3.11 / postgresql 15 (clean build ~2.5-3 min
# on 2 cores under nice). master (cd7ab5e, needs libcjson-dev, no patches) also compiles.
# Steps: apt deps -> upstream py>=3.10 patches -> autogen -> configure -> make -> make install
#        -> pbs_postinstall -> chmod 4755 pbs_iff pbs_rcp.  Start it with pbs-one-node.sh up.
set -euo pipefail
SRC=${1:?usage: $0 SRC_DIR}
SRC=$(cd "$SRC" && pwd)
PREFIX=${PREFIX:-/opt/pbs}
JOBS=${JOBS:-$(nproc)}
# never pick up pyenv/conda pythons: the build must link the system libpython3
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive
NICE="nice -n 19"
T_ALL=$(date +%s)
t() { local s=$(date +%s); "$@"; echo "[build-openpbs] $(printf '%-12s' "$STEP") $(( $(date +%s) - s ))s" >&2; }

DEPS="gcc g++ make libtool autoconf automake pkg-config libhwloc-dev libx11-dev libxt-dev
 libedit-dev libical-dev libncurses-dev perl postgresql postgresql-contrib
 libpq-dev python3 python3-dev tcl-dev tk-dev swig libexpat1-dev expat libssl-dev libxext-dev
 libxft-dev libcjson-dev sudo procps iproute2 hostname patch"

apt_deps() {
  local missing
  missing=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' $DEPS 2>/dev/null | awk '$1!="ii"{print $2}' || true)
  # packages dpkg has never heard of are not printed at all; compare counts
  if [ -n "$missing" ] || [ "$(dpkg-query -W -f='${db:Status-Abbrev}\n' $DEPS 2>/dev/null | grep -c '^ii')" -lt "$(echo $DEPS | wc -w)" ]; then
    apt-get update -q >/dev/null
    $NICE apt-get install -y -q --no-install-recommends $DEPS >/tmp/build-openpbs-apt.log 2>&1 \
      || { tail -30 /tmp/build-openpbs-apt.log; exit 1; }
  fi
}

# upstream fixes needed for python >= 3.10/3.11 that are not in v23.06.06:
#   1d17427c0 "compile with Python 3.11 (#2594)" and dd2a24640 "Add support for python 3.10 (#2573)"
apply_patch() {   # idempotent: skip if already applied, skip if file contents already fixed upstream
  local p=$1
  if patch -d "$SRC" -p1 -R -s -f --dry-run <"$p" >/dev/null 2>&1; then return 0; fi
  if patch -d "$SRC" -p1 -N -s -f --dry-run <"$p" >/dev/null 2>&1; then patch -d "$SRC" -p1 -N -s <"$p"; return 0; fi
  echo "[build-openpbs] WARNING: $(basename "$p") neither applies nor is applied; continuing" >&2
}
patches() {
  local d; d=$(mktemp -d)
  write_patches "$d"
  if grep -q '#include <eval.h>' "$SRC/src/lib/Libpython/pbs_python_external.c"; then apply_patch "$d/py311.patch"; fi
  if ! grep -q PY_SSIZE_T_CLEAN "$SRC/src/include/pbs_python_private.h"; then apply_patch "$d/py310.patch"; fi
  rm -rf "$d"
}

configure_build() {
  cd "$SRC"
  [ -x configure ] || $NICE ./autogen.sh >/tmp/build-openpbs-autogen.log 2>&1
  if [ ! -f config.status ] || ! grep -q -- "--prefix=$PREFIX" config.status; then
    $NICE ./configure --prefix="$PREFIX" PYTHON=/usr/bin/python3 >/tmp/build-openpbs-configure.log 2>&1 \
      || { tail -30 /tmp/build-openpbs-configure.log; exit 1; }
  fi
}
compile() { cd "$SRC"; $NICE make -j"$JOBS" >/tmp/build-openpbs-make.log 2>&1 || { grep -n 'error' /tmp/build-openpbs-make.log | head -20; tail -20 /tmp/build-openpbs-make.log; exit 1; }; }
install_pbs() { cd "$SRC"; $NICE make install >/tmp/build-openpbs-install.log 2>&1 || { tail -30 /tmp/build-openpbs-install.log; exit 1; }; }
postinstall() {
  # creates /etc/pbs.conf (if missing), PBS_HOME=/var/spool/pbs, /etc/init.d/pbs.
  # systemd/update-rc.d errors in containers are harmless.
  "$PREFIX/libexec/pbs_postinstall" >/tmp/build-openpbs-postinstall.log 2>&1 || { cat /tmp/build-openpbs-postinstall.log; exit 1; }
  chmod 4755 "$PREFIX/sbin/pbs_iff" "$PREFIX/sbin/pbs_rcp"
}

write_patches() {
cat >"$1/py311.patch" <<'PBS_PATCH_EOF'
diff --git a/src/lib/Libpython/pbs_python_external.c b/src/lib/Libpython/pbs_python_external.c
index e0c33fca0..5fdf55718 100644
--- a/src/lib/Libpython/pbs_python_external.c
+++ b/src/lib/Libpython/pbs_python_external.c
@@ -54,7 +54,7 @@
 #ifdef PYTHON
 
 #include <pbs_python_private.h> /* private python file  */
-#include <eval.h>		/* For PyEval_EvalCode  */
+#include <Python.h>		/* Includes eval.h for PyEval_EvalCode  */
 #include <pythonrun.h>		/* For Py_SetPythonHome */
 #include <sys/types.h>
 #include <sys/stat.h>
PBS_PATCH_EOF
cat >"$1/py310.patch" <<'PBS_PATCH_EOF'
diff --git a/src/include/pbs_python_private.h b/src/include/pbs_python_private.h
index cd94f4ff6..2de058bf2 100644
--- a/src/include/pbs_python_private.h
+++ b/src/include/pbs_python_private.h
@@ -61,6 +61,9 @@
  *
  */
 
+#ifndef PY_SSIZE_T_CLEAN
+#define PY_SSIZE_T_CLEAN
+#endif
 #include <Python.h>
 #include <pbs_python.h> /* the pbs python external header file supporting
                              with or without built-in python */
diff --git a/src/lib/Libifl/pbs_ifl.i b/src/lib/Libifl/pbs_ifl.i
index a6cd41a1e..433fa5b74 100644
--- a/src/lib/Libifl/pbs_ifl.i
+++ b/src/lib/Libifl/pbs_ifl.i
@@ -39,6 +39,10 @@
 
 %module pbs_ifl
 
+%begin %{
+#include <pbs_python_private.h>
+%}
+
 %{
 #include "pbs_ifl.h"
 #include "pbs_error.h"
diff --git a/src/lib/Libpython/common_python_utils.c b/src/lib/Libpython/common_python_utils.c
index 772561c57..1780c586f 100644
--- a/src/lib/Libpython/common_python_utils.c
+++ b/src/lib/Libpython/common_python_utils.c
@@ -740,7 +740,11 @@ pbsv1mod_meth_logmsg(PyObject *self, PyObject *args, PyObject *kwds)
 	int severity = -1;
 	int eventtype = -1;
 	char *emsg = NULL;
+#ifdef PY_SSIZE_T_CLEAN
+	Py_ssize_t emsg_len = 0;
+#else
 	int emsg_len = 0;
+#endif
 
 	/* The use of "s#" below is to allow embedded NULLs, to guarantee */
 	/* something will get printed and not get an exception */
@@ -821,7 +825,11 @@ pbsv1mod_meth_logjobmsg(PyObject *self, PyObject *args, PyObject *kwds)
 
 	char *jobid = NULL;
 	char *msg = NULL;
+#ifdef PY_SSIZE_T_CLEAN
+	Py_ssize_t msg_len = 0;
+#else
 	int msg_len = 0;
+#endif
 
 	/* The use of "s#" below is to allow embedded NULLs, to guarantee */
 	/* something will get printed and not get an exception */
diff --git a/src/lib/Libpython/pbs_python_svr_external.c b/src/lib/Libpython/pbs_python_svr_external.c
index 48b57d507..e5a9049a0 100644
--- a/src/lib/Libpython/pbs_python_svr_external.c
+++ b/src/lib/Libpython/pbs_python_svr_external.c
@@ -50,6 +50,7 @@
 #include <pbs_config.h>
 
 #ifdef PYTHON
+#include <pbs_python_private.h>
 #include <Python.h>
 #endif
 
diff --git a/src/lib/Libpython/shared_python_utils.c b/src/lib/Libpython/shared_python_utils.c
index 100272b36..bdc9eab5a 100644
--- a/src/lib/Libpython/shared_python_utils.c
+++ b/src/lib/Libpython/shared_python_utils.c
@@ -39,6 +39,7 @@
 
 #include <pbs_config.h>
 #include <wchar.h>
+#include <pbs_python_private.h>
 #include <Python.h>
 #include "pbs_ifl.h"
 #include "pbs_internal.h"
diff --git a/src/modules/python/pbs_v1_module_init.c b/src/modules/python/pbs_v1_module_init.c
index 3e8ce9694..c1a84e867 100644
--- a/src/modules/python/pbs_v1_module_init.c
+++ b/src/modules/python/pbs_v1_module_init.c
@@ -48,7 +48,7 @@
 #include "server.h"
 #include "pbs_nodes.h"
 #include "pbs_sched.h"
-#include "pbs_python_private.h"
+#include <pbs_python_private.h>
 #include <Python.h>
 
 #define PBS_V1_COMMON_MODULE_DEFINE_STUB_FUNCS 1
diff --git a/src/resmom/catch_child.c b/src/resmom/catch_child.c
index 0b3bd78a2..79ad1f1b1 100644
--- a/src/resmom/catch_child.c
+++ b/src/resmom/catch_child.c
@@ -39,6 +39,7 @@
 
 #include <pbs_config.h> /* the master config generated by configure */
 #ifdef PYTHON
+#include <pbs_python_private.h>
 #include <Python.h>
 #endif
 
diff --git a/src/resmom/mom_main.c b/src/resmom/mom_main.c
index 9e5ec6eea..52b426900 100644
--- a/src/resmom/mom_main.c
+++ b/src/resmom/mom_main.c
@@ -46,6 +46,7 @@
 #include <pbs_config.h> /* the master config generated by configure */
 
 #ifdef PYTHON
+#include <pbs_python_private.h>
 #include <Python.h>
 #include <pythonrun.h>
 #include <wchar.h>
diff --git a/src/resmom/mom_updates_bundle.c b/src/resmom/mom_updates_bundle.c
index e247dd28d..9111884ff 100644
--- a/src/resmom/mom_updates_bundle.c
+++ b/src/resmom/mom_updates_bundle.c
@@ -43,6 +43,7 @@
  */
 
 #include <pbs_config.h> /* the master config generated by configure */
+#include <pbs_python_private.h>
 #include <Python.h>
 #include <time.h>
 #include "resource.h"
diff --git a/src/scheduler/fifo.cpp b/src/scheduler/fifo.cpp
index b22d0ef37..0b0c6162d 100644
--- a/src/scheduler/fifo.cpp
+++ b/src/scheduler/fifo.cpp
@@ -44,6 +44,7 @@
 #include <pbs_config.h>
 
 #ifdef PYTHON
+#include <pbs_python_private.h>
 #include <Python.h>
 #include <pythonrun.h>
 #include <wchar.h>
diff --git a/src/scheduler/job_info.cpp b/src/scheduler/job_info.cpp
index dca88e74e..2d668f4f6 100644
--- a/src/scheduler/job_info.cpp
+++ b/src/scheduler/job_info.cpp
@@ -87,6 +87,7 @@
 #include <pbs_config.h>
 
 #ifdef PYTHON
+#include <pbs_python_private.h>
 #include <Python.h>
 #endif
 
diff --git a/src/scheduler/pbs_sched_bare.cpp b/src/scheduler/pbs_sched_bare.cpp
index 7ca8e51a9..e82bc9452 100644
--- a/src/scheduler/pbs_sched_bare.cpp
+++ b/src/scheduler/pbs_sched_bare.cpp
@@ -45,6 +45,7 @@
 #include <stdio.h>
 
 #ifdef PYTHON
+#include <pbs_python_private.h>
 #include <Python.h>
 #include <pythonrun.h>
 #include <wchar.h>
diff --git a/src/server/sched_func.c b/src/server/sched_func.c
index 5e58f62e9..e67e4d086 100644
--- a/src/server/sched_func.c
+++ b/src/server/sched_func.c
@@ -47,6 +47,7 @@
 #include <pbs_config.h>
 
 #ifdef PYTHON
+#include <pbs_python_private.h>
 #include <Python.h>
 #endif
 
diff --git a/src/tools/pbs_probe.c b/src/tools/pbs_probe.c
index 84c097f7a..309dfe2e0 100644
--- a/src/tools/pbs_probe.c
+++ b/src/tools/pbs_probe.c
@@ -80,6 +80,7 @@
  */
 #include <pbs_config.h>
 
+#include <pbs_python_private.h>
 #include <Python.h>
 #include <sys/types.h>
 #include <sys/stat.h>
@@ -3453,4 +3454,4 @@ fix_perm_owner(MPUG *p_mpug, struct stat *ps, ADJ *p_adj)
 			break;
 	}
 }
-// clang-format on
\ No newline at end of file
+// clang-format on
diff --git a/src/tools/pbs_python.c b/src/tools/pbs_python.c
index 0e96b60aa..8aa12aa2b 100644
--- a/src/tools/pbs_python.c
+++ b/src/tools/pbs_python.c
@@ -63,6 +63,7 @@
  */
 #include <pbs_config.h>
 
+#include <pbs_python_private.h>
 #include <Python.h>
 
 #include <pbs_ifl.h>
@@ -1569,7 +1570,7 @@ main(int argc, char *argv[], char *envp[])
 					pc2 = in_data + 2;
 					while (isspace(*pc2))
 						pc2++;
-					strncpy(dirname, pc2, MAXPATHLEN);
+					memccpy(dirname, pc2, '\0', MAXPATHLEN);
 					if ((pc = strrchr(dirname, ';')))
 						*pc = '\0';
 					if (chdir(dirname) == -1) {
PBS_PATCH_EOF
}

if [ -z "${SKIP_APT:-}" ]; then STEP=apt-deps t apt_deps; fi
STEP=patches t patches
STEP=configure t configure_build
STEP=make t compile
STEP=install t install_pbs
STEP=postinstall t postinstall
"$PREFIX/bin/qstat" --version
echo "[build-openpbs] total        $(( $(date +%s) - T_ALL ))s" >&2
