# Import fasthess before NumPy so its idle-thread defaults (OMP_WAIT_POLICY,
# OPENBLAS_THREAD_TIMEOUT; see README "Memory and threads") apply to the suite too.
import fasthess  # noqa: F401
