# Reset vector -> 16-bit -> 32-bit -> 64-bit -> Rust (`rust_start`).
#
# Layout and every address used here come from layout.ld. The code never touches the legacy
# alias of the firmware below 1 MiB: the first far jump goes straight to the image's mapping
# just below 4 GiB, which is the only mapping that exists under SEV-SNP.
#
# Register use across the stages: EBP:EBX hold the TSC read at the reset vector, handed to
# Rust as its first argument (reset -> ready timing).

# ---------------------------------------------------------------------------------------------
# 0xFFFFFFF0: the first instruction fetched after reset (CS.base 0xFFFF0000, IP 0xFFF0).
.section .reset_vector, "ax"
.code16
.globl reset_vector
reset_vector:
    jmp     boot16                      # near jump inside the CS segment (last 64 KiB)

# ---------------------------------------------------------------------------------------------
# 16-bit real mode: load a flat GDT and enter 32-bit protected mode.
.section .boot16, "ax"
.code16
boot16:
    cli
    cld
    rdtsc                               # TSC at reset, kept in EBP:EBX
    movl    %eax, %ebp
    movl    %edx, %ebx
    # DS is 0 here, so address the GDT pointer through CS (base 0xFFFF0000).
    lgdtl   %cs:(boot_gdt_ptr - 0xffff0000)
    movl    %cr0, %eax
    andl    $~0x60000000, %eax          # clear CR0.CD and CR0.NW: reset leaves caches off
    orl     $1, %eax                    # CR0.PE
    movl    %eax, %cr0
    ljmpl   $0x08, $boot32              # flat 32-bit code at its physical address

# Boot GDT (read-only, in ROM). Accessed bits are preset so the CPU never writes to it.
.balign 8
boot_gdt:
    .quad   0
    .quad   0x00cf9b000000ffff          # 0x08: 32-bit code, base 0, limit 4 GiB
    .quad   0x00cf93000000ffff          # 0x10: data, base 0, limit 4 GiB
    .quad   0x00af9b000000ffff          # 0x18: 64-bit code
boot_gdt_end:
boot_gdt_ptr:
    .word   boot_gdt_end - boot_gdt - 1
    .long   boot_gdt

# ---------------------------------------------------------------------------------------------
# 32-bit protected mode: build the boot page tables and enter long mode.
#
#   PML4[0] -> PDPT; PDPT[0..4] -> PD0, PD1, PD2, PD3 (2 MiB pages)
#   PD0: identity 0..1 GiB, write-back (RAM)
#   PD1: entry 0 only: ROM_ALIAS (1 GiB) -> ROM_FRAME, read-only (Rust code and rodata)
#   PD2, PD3: identity 2..4 GiB, uncached (MMIO), except the ROM frame, which is write-back
.section .boot32, "ax"
.code32
boot32:
    movw    $0x10, %ax
    movw    %ax, %ds
    movw    %ax, %es
    movw    %ax, %ss
    movw    %ax, %fs
    movw    %ax, %gs

    movl    %cr4, %eax
    orl     $(1 << 5), %eax             # CR4.PAE
    movl    %eax, %cr4

    movl    $__boot_pt_start, %edi      # zero the six table pages
    movl    $(6 * 4096 / 4), %ecx
    xorl    %eax, %eax
    rep stosl

    movl    $__boot_pt_start, %edi      # EDI = PML4 for the rest of this stage
    leal    0x1003(%edi), %eax          # PML4[0] = PDPT | P | RW
    movl    %eax, (%edi)
    leal    0x2003(%edi), %eax          # PDPT[0] = PD0
    movl    %eax, 0x1000(%edi)
    leal    0x3003(%edi), %eax          # PDPT[1] = PD1 (ROM alias)
    movl    %eax, 0x1008(%edi)
    leal    0x4003(%edi), %eax          # PDPT[2] = PD2
    movl    %eax, 0x1010(%edi)
    leal    0x5003(%edi), %eax          # PDPT[3] = PD3
    movl    %eax, 0x1018(%edi)

    leal    0x2000(%edi), %esi          # PD0: 512 x 2 MiB, P | RW | PS
    movl    $0x83, %eax
    movl    $512, %ecx
1:  movl    %eax, (%esi)
    addl    $0x200000, %eax
    addl    $8, %esi
    loop    1b

    leal    0x4000(%edi), %esi          # PD2 + PD3: 1024 x 2 MiB from 2 GiB, P | RW | PWT | PCD | PS
    movl    $(0x80000000 | 0x9b), %eax
    movl    $1024, %ecx
2:  movl    %eax, (%esi)
    addl    $0x200000, %eax
    addl    $8, %esi
    loop    2b
    movl    $(ROM_FRAME + 0x83), 0x5ff8(%edi)   # the ROM frame itself: write-back
    movl    $(ROM_FRAME + 0x81), 0x3000(%edi)   # PD1[0]: alias, P | PS, read-only

    movl    %edi, %cr3
    movl    $0xc0000080, %ecx           # EFER.LME
    rdmsr
    orl     $(1 << 8), %eax
    wrmsr
    movl    %cr0, %eax
    orl     $0x80010000, %eax           # CR0.PG | CR0.WP (read-only pages bind the kernel too)
    movl    %eax, %cr0
    ljmpl   $0x18, $boot64

# ---------------------------------------------------------------------------------------------
# 64-bit long mode: stack, .data, .bss, then Rust.
.section .boot64, "ax"
.code64
boot64:
    movw    $0x10, %ax
    movw    %ax, %ds
    movw    %ax, %es
    movw    %ax, %ss
    movabsq $__stack_top, %rsp

    movabsq $__data_lma, %rsi           # copy .data from its ROM image
    movabsq $__data_start, %rdi
    movabsq $__data_size, %rcx
    rep movsb

    movabsq $__bss_start, %rdi          # zero .bss
    movabsq $__bss_size, %rcx
    xorl    %eax, %eax
    rep stosb

    movl    %ebx, %ebx                  # RDI = TSC at reset (EBX:EBP, zero-extended)
    shlq    $32, %rbx
    movl    %ebp, %ebp
    orq     %rbp, %rbx
    movq    %rbx, %rdi
    xorl    %ebp, %ebp                  # end of the frame-pointer chain
    movabsq ${rust_start}, %rax         # into the ROM alias
    call    *%rax
3:  cli
    hlt
    jmp     3b
