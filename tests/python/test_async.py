"""The asyncio API under asyncio.run against the real QEMU: commands as
coroutines, events with async for, refusals as exceptions, no threads."""
import asyncio
import errno
import os
import threading
import unittest

import vmtest
import vmsig


@unittest.skipUnless(vmtest.have_qemu(), "no QEMU build")
class Async(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.vm = vmtest.VM(kernel=False, grants="uid:%d endpoints=0 caps=all\n"
                           "token:observer endpoints=0 caps=OBSERVE\n" % os.getuid())

    @classmethod
    def tearDownClass(cls):
        cls.vm.close()

    def run_async(self, coro):
        threads = threading.active_count()
        r = asyncio.run(asyncio.wait_for(coro, 30))
        self.assertEqual(threading.active_count(), threads, "the asyncio API started a thread")
        return r

    def test_commands_and_events(self):
        """await status/cont/stop; async for sees RUNSTATE running then paused"""
        async def main():
            vm = await vmsig.aconnect(self.vm.sock)
            ev = await vm.next_event(5)
            self.assertTrue(ev.snapshot)
            st = await vm.status()
            self.assertEqual(st.state_name, "prelaunch")
            await vm.cont()
            await vm.stop()
            seen = []
            async for ev in vm.aevents(timeout=0.5):
                if isinstance(ev, vmsig.RunState):
                    seen.append(ev.state_name)
            self.assertEqual(seen[-2:], ["running", "paused"])
            await vm.nop()
            await vm.close()
        self.run_async(main())

    def test_concurrent_calls(self):
        """several calls in flight at once on one connection (gather)"""
        async def main():
            async with await vmsig.aconnect(self.vm.sock) as vm:
                infos = await asyncio.gather(*(vm.status() for _ in range(20)))
                self.assertEqual({i.name for i in infos}, {"vmsig-guest"})
        self.run_async(main())

    def test_refusals(self):
        """EPERM from a weak token, EBUSY from a non-owner, EFAULT MEMWRITE, as exceptions"""
        async def main():
            owner = await vmsig.aconnect(self.vm.sock)
            other = await vmsig.aconnect(self.vm.sock)
            weak = await vmsig.aconnect(self.vm.sock, token="observer")
            with self.assertRaises(vmsig.PermissionDenied) as cm:
                await weak.stop()
            self.assertEqual(cm.exception.errno, errno.EPERM)
            async with owner.acquire("run"):
                with self.assertRaises(vmsig.Busy) as cm:
                    await other.stop()
                self.assertEqual(cm.exception.errno, errno.EBUSY)
            await other.stop()
            with self.assertRaises(vmsig.BadAddress) as cm:
                await owner.memwrite(0xFFF0_0000_00, b"x")
            self.assertEqual(cm.exception.errno, errno.EFAULT)
            for c in (owner, other, weak):
                await c.close()
        self.run_async(main())

    def test_memory(self):
        """await memory(): read, view, MEMWRITE seen through the mapping"""
        async def main():
            vm = await vmsig.aconnect(self.vm.sock)
            mem = await vm.memory()
            await vm.memwrite(0x0C800000, b"ASYNCIO!")
            self.assertEqual(bytes(mem.view(0x0C800000, 8)), b"ASYNCIO!")
            self.assertEqual(mem.find(b"ASYNCIO!"), [0x0C800000])
            await vm.close()
        self.run_async(main())


if __name__ == "__main__":
    unittest.main()
