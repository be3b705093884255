/*
 * _fastcall: calls the probe library's functions from Python without ctypes.
 *
 * A traced step calls step_begin (6 arguments), step_end (3) and, in
 * EngineCore, sched_step (11).  Through ctypes each call converts its
 * arguments one by one and costs 1 to 3 us, on the thread that runs vLLM's
 * step; a METH_FASTCALL function of a C extension takes about 0.1 us.  This
 * module only calls: the probe sites stay in libprofilemate_marker (plain C,
 * no Python API, found by the tracer by its name).  native.Probes hands it
 * the address ctypes resolved and the function's argument count; without
 * this module (built where Python's headers were missing) it uses ctypes.
 *
 * Limited API (3.10): one abi3 build serves every CPython vLLM runs on.
 */
#define Py_LIMITED_API 0x030A0000
#include <Python.h>
#include <stdint.h>

#define CAPSULE_NAME "profilemate_marker._fastcall.probe"
#define MAX_ARGS 11

typedef void (*probe1)(int64_t);
typedef void (*probe3)(int64_t, int64_t, int64_t);
typedef void (*probe6)(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
typedef void (*probe11)(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                        int64_t, int64_t, int64_t, int64_t, int64_t);

/* The argument counts of the protocol's probes (native._ARG_COUNTS). */
static int known_count(Py_ssize_t n)
{
    return n == 1 || n == 3 || n == 6 || n == 11;
}

/* What a probe function object holds: the function and its argument count. */
struct probe {
    void *fn;
    Py_ssize_t nargs;
};

static void probe_free(PyObject *capsule)
{
    PyMem_Free(PyCapsule_GetPointer(capsule, CAPSULE_NAME));
}

/* Calls the probe with its arguments as int64_t, their count checked. */
static PyObject *fire(PyObject *capsule, PyObject *const *args, Py_ssize_t nargs)
{
    struct probe *p = PyCapsule_GetPointer(capsule, CAPSULE_NAME);
    int64_t v[MAX_ARGS];

    if (!p)
        return NULL;
    if (nargs != p->nargs) {
        PyErr_Format(PyExc_TypeError, "probe takes %zd arguments, got %zd", p->nargs, nargs);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        v[i] = PyLong_AsLongLong(args[i]);
        if (v[i] == -1 && PyErr_Occurred())
            return NULL;
    }
    switch (nargs) {
    case 1:
        ((probe1)p->fn)(v[0]);
        break;
    case 3:
        ((probe3)p->fn)(v[0], v[1], v[2]);
        break;
    case 6:
        ((probe6)p->fn)(v[0], v[1], v[2], v[3], v[4], v[5]);
        break;
    case 11:
        ((probe11)p->fn)(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10]);
        break;
    }
    Py_RETURN_NONE;
}

static PyMethodDef fire_def = {"probe", (PyCFunction)(void (*)(void))fire, METH_FASTCALL,
                               "Fire the probe (its arguments: int64 values)."};

/* function(address, nargs): a callable that calls the C function at address. */
static PyObject *function(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    struct probe *p;
    PyObject *capsule, *fn;
    void *address;
    Py_ssize_t n;

    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "function(address, nargs)");
        return NULL;
    }
    address = PyLong_AsVoidPtr(args[0]);
    if (!address) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "function address is 0");
        return NULL;
    }
    n = PyLong_AsSsize_t(args[1]);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (!known_count(n)) {
        PyErr_Format(PyExc_ValueError, "no probe takes %zd arguments (1, 3, 6 or 11)", n);
        return NULL;
    }
    p = PyMem_Malloc(sizeof(*p));
    if (!p)
        return PyErr_NoMemory();
    p->fn = address;
    p->nargs = n;
    capsule = PyCapsule_New(p, CAPSULE_NAME, probe_free);
    if (!capsule) {
        PyMem_Free(p);
        return NULL;
    }
    fn = PyCFunction_New(&fire_def, capsule);
    Py_DECREF(capsule);
    return fn;
}

static PyMethodDef methods[] = {
    {"function", (PyCFunction)(void (*)(void))function, METH_FASTCALL,
     "function(address, nargs): call the probe function at address with nargs int64 arguments."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastcall", "Probe calls without ctypes.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastcall(void)
{
    return PyModule_Create(&module);
}
