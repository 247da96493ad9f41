"""Children outlive the (short-lived) thread that asked for them, and die with the checker."""

import subprocess
import threading
import time
import unittest

from procs import Spawner


class SpawnerTest(unittest.TestCase):
    def test_a_child_started_from_a_finished_thread_keeps_running(self):
        spawner = Spawner()
        started = []
        t = threading.Thread(target=lambda: started.append(
            spawner.popen(["sleep", "30"], stdout=subprocess.DEVNULL)))
        t.start()
        t.join()
        child = started[0]
        try:
            # PR_SET_PDEATHSIG of a child forked by `t` itself would have killed it by now.
            time.sleep(0.3)
            self.assertIsNone(child.poll(), "the child died with the thread that asked for it")
        finally:
            child.kill()
            child.wait(timeout=5)


if __name__ == "__main__":
    unittest.main()
