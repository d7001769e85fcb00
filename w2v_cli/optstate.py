"""Adam's state on disk: the optimizer pickled as ``trainer.save_states`` does, but with each
state array in a ``.npy`` file of its own (checkpoint.py puts them in a checkpoint folder).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from . import arrays

TRAINER_FILE = "trainer.states"


# trainer.save_states pickles the optimizer with every state array inside: with a 1M-word
# vocabulary that held the 1.6 GB of moments twice more in memory (as raw bytes and in the
# pickle) and doubled the peak. Here the same pickle holds a file name for each array, and
# the arrays are written one at a time. Reading accepts both (a version-1 checkpoint's
# trainer.states has its arrays inside).

def _updaters(trainer) -> list:
    """The Updater objects that hold ``trainer``'s optimizer state: the kvstore's when it
    updates there, else one per device (Trainer.save_states/load_states pick the same),
    after the set-up those two do first."""
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
    if trainer._update_on_kvstore:
        return [trainer._kvstore._updater]
    return list(trainer._updaters)


class _StatesOut(pickle.Pickler):
    def __init__(self, f, folder: Path):
        super().__init__(f, protocol=pickle.HIGHEST_PROTOCOL)
        self.folder, self.names = folder, []

    def persistent_id(self, obj):
        if not arrays.is_dense_array(obj):
            return None  # anything else is pickled as usual
        name = f"state-{len(self.names)}.npy"
        np.save(self.folder / name, arrays.to_numpy(obj), allow_pickle=False)
        self.names.append(name)
        return ("np" if arrays.is_numpy_array(obj) else "nd", name)


class _StatesIn(pickle.Unpickler):
    def __init__(self, f, folder: Path):
        super().__init__(f)
        self.folder = folder

    def persistent_load(self, pid):
        kind, name = pid
        if not (isinstance(name, str) and name.startswith("state-") and "/" not in name):
            raise pickle.UnpicklingError(f"bad array reference {name!r}")
        return arrays.state_array(np.load(self.folder / name, allow_pickle=False), kind == "np")


def save_states(trainer, folder: Path) -> list[str]:
    """Write the optimizer and its state to ``folder``: TRAINER_FILE and one ``state-N.npy``
    per state array. Returns the array files' names."""
    updater = _updaters(trainer)[0]
    with open(folder / TRAINER_FILE, "wb") as f:
        out = _StatesOut(f, folder)
        out.dump((updater.states, updater.optimizer))
    return out.names


def load_states(trainer, folder: Path) -> None:
    """Load what save_states wrote (or ``trainer.save_states``, for a version-1 checkpoint)
    into ``trainer``, as ``trainer.load_states`` does: each updater gets its own copy, on its
    parameter's device (updated on the kvstore: moved there at its next update)."""
    optimizer = None
    for k, updater in enumerate(_updaters(trainer)):
        with open(folder / TRAINER_FILE, "rb") as f:
            states, loaded = _StatesIn(f, folder).load()
        optimizer = optimizer or loaded
        updater.states, updater.optimizer = states, optimizer
        updater.states_synced = dict.fromkeys(states, False)
        if not trainer._update_on_kvstore:  # the catch-up reads them before the first update
            for i, state in states.items():
                ctx = trainer._params[i].list_ctx()[k]
                updater.states[i] = updater.sync_state_context(state, ctx)
                updater.states_synced[i] = True
    trainer._optimizer = optimizer
    optimizer.param_dict = dict(enumerate(trainer._params))
    # Adam's step counts are kept per device number, and the run may resume on others.
    counts = optimizer._index_update_count  # those of the device that updated last
    optimizer._all_index_update_counts = {c.device_id: dict(counts) for c in trainer._contexts}
    optimizer._set_current_context(trainer._contexts[0].device_id)
