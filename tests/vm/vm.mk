# tests/vm/vm.mk: the QEMU NUMA test bed, included by the top-level Makefile.
#
#   make vm-deps                        fetch the guest kernel (cached)
#   make check-vm [SCENARIO=name]       run all scenarios, or one
#   make vm-shell [TOPOLOGY=tiered]     interactive guest for debugging
#   make bench-vm                       VM benchmarks (tests/vm/bench/), appended
#                                       to $(BUILD)/bench-results.md (part of make bench)
#   make demo-run                       the guided demo (tests/vm/demo/; make demo)
#
# Variables: VM_CACHE (kernel cache, default ~/.cache/numatier), VM_JOBS
# (guests at once, default 1), VM_VERBOSE=1 (stream guest consoles),
# VM_APPEND / VM_CPU (kernel args and QEMU -cpu for vm-shell).
VM_CACHE    ?= $(HOME)/.cache/numatier
VM_JOBS     ?= 1
VM_APPEND   ?=
VM_CPU      ?= max
TOPOLOGY    ?= tiered
SCENARIO    ?=

VM_DIR       := tests/vm
VM_BUILD     := $(BUILD)/vm
VM_KERNEL    := $(abspath $(VM_CACHE))/kernel/current
VM_INITRD    := $(VM_BUILD)/initramfs.cpio.gz
VM_WORKLOADS := $(patsubst $(VM_DIR)/workloads/%.c,$(VM_BUILD)/workloads/%,$(wildcard $(VM_DIR)/workloads/*.c))
# Host binaries packed with their libraries: the daemon, the CLI, and
# numactl's tools and numad as the references to compare against.
VM_BINS      := $(BUILD)/numatierd $(BUILD)/numatierctl
VM_HOST_BINS := $(foreach b,numactl numastat migratepages numad,$(shell command -v $(b) 2>/dev/null))
VM_RUN       := python3 $(VM_DIR)/run.py --kernel-dir $(VM_KERNEL) --initrd $(VM_INITRD) \
                --logdir $(VM_BUILD)/logs

.PHONY: vm-deps vm-initramfs check-vm vm-shell vm-clean bench-vm demo-run

vm-deps:
	@$(VM_DIR)/fetch-kernel.sh $(VM_CACHE)

$(VM_BUILD)/workloads/%: $(VM_DIR)/workloads/%.c $(wildcard $(VM_DIR)/workloads/*.h)
	@mkdir -p $(dir $@)
	$(CC) -static -O2 -g -Wall -Wextra -Wshadow -Wmissing-prototypes -o $@ $<

# mkinitramfs.sh rewrites the archive only when the hash of its inputs
# (scenarios, libraries, binaries, kernel modules) changed.
vm-initramfs: vm-deps $(VM_WORKLOADS) $(VM_BINS)
	@$(VM_DIR)/mkinitramfs.sh $(VM_INITRD) $(VM_KERNEL) $(VM_BUILD)/workloads \
	    $(VM_BINS) $(VM_HOST_BINS)

check-vm: vm-initramfs
	@$(VM_RUN) -j $(VM_JOBS) $(if $(filter 1,$(VM_VERBOSE)),-v) $(SCENARIO)

# VM_BENCH_MIB, VM_BENCH_DEADLINE, VM_BENCH_ONLY=converge|mover: see vmbench.py.
bench-vm: vm-initramfs
	@$(VM_DIR)/bench/vmbench.py --kernel-dir $(VM_KERNEL) --initrd $(VM_INITRD) \
	    --logdir $(VM_BUILD)/logs/bench $(BUILD)/bench-results.md

demo-run: vm-initramfs
	@$(VM_RUN) --scenarios $(VM_DIR)/demo --live demo

vm-shell: vm-initramfs
	@$(VM_RUN) --shell --topology $(TOPOLOGY) --cpu '$(VM_CPU)' --append '$(VM_APPEND)'

vm-clean:
	rm -rf $(VM_BUILD)
