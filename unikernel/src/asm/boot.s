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
# 32-bit protected mode: detect SEV-SNP, build the boot page tables and enter long mode.
#
#   PML4[0] -> PDPT; PDPT[0..4] -> PD0, PD1, PD2, PD3 (2 MiB pages)
#   PD0: identity 0..1 GiB, write-back (RAM)
#   PD1: entry 0 only: ROM_ALIAS (1 GiB) -> ROM_FRAME, read-only (Rust code and rodata)
#   PD2, PD3: identity 2..4 GiB, uncached (MMIO), except the ROM frame, which is write-back
#
# Under SEV-SNP every entry that maps guest memory (the tables themselves, PD0's RAM, the ROM
# frame and its alias: the image is private RAM under SNP) carries the C-bit, so that memory is
# encrypted; the MMIO entries of PD2/PD3 do not (devices see only shared memory). APM vol. 2
# (#24593) §15.34.5. EDX holds the C-bit as a mask for the high dword of an entry (0 on plain
# boots, where every store of EDX below writes 0 over 0 and the tables are the ones we always built).
.section .boot32, "ax"
.code32
boot32:
    movw    $0x10, %ax
    movw    %ax, %ds
    movw    %ax, %es
    movw    %ax, %ss
    movw    %ax, %fs
    movw    %ax, %gs

# SEV detection. The catch-22: under SEV-ES/SNP, CPUID raises #VC (vector 29) and with no IDT
# that is a triple fault; elsewhere RDMSR of SEV_STATUS (C001_0131h) may raise #GP. So CPUID
# runs with a one-gate IDT whose #VC handler only skips the instruction and sets EDI = 1: a
# #VC proves SEV-ES or SNP, and there SEV_STATUS can be read (it is never intercepted; APM vol.
# 2 §15.34.10). Without a #VC, SEV_STATUS is read only when CPUID Fn8000_001F EAX[1] says SEV
# exists (the order Linux and OVMF use). The C-bit position (CPUID Fn8000_001F EBX[5:0]) is
# not asked of the hypervisor (the GHCB MSR protocol CPUID of #56421 §2.3.1 is untrusted: a
# lying C-bit would map RAM unencrypted) but read from the CPUID page, which the PSP checked
# at launch (SNP ABI #56860, CPUID_FUNCTION table); Rust checks it again in snp::hw.
# The scratch IDT and stack live in the page-table pages, which are zeroed right after.
# SEV without ES (CPUID does not trap) and SEV-ES without SNP are not supported: halt.
    movl    $(__boot_pt_start + 0x1000), %esp   # scratch stack: top of the PML4 page
    pushl   %ebx                        # TSC high half (CPUID clobbers EBX)
    movl    $(__boot_pt_start + 0x2000), %edi   # IDT vectors 0..29: not present
    movl    $(30 * 8 / 4), %ecx
    xorl    %eax, %eax
    rep stosl
    movl    $boot_vc32, %eax            # IDT[29] in the PD0 page: 32-bit interrupt gate
    movl    $(__boot_pt_start + 0x2000 + 29 * 8), %edx
    movw    %ax, (%edx)                 # offset 15:0
    movw    $0x08, 2(%edx)              # selector: 32-bit code
    movw    $0x8e00, 4(%edx)            # P, DPL 0, 32-bit interrupt gate
    shrl    $16, %eax
    movw    %ax, 6(%edx)                # offset 31:16
    lidtl   boot_idt_ptr
    xorl    %edi, %edi                  # EDI = 1 once a #VC was taken
    xorl    %edx, %edx                  # EDX = C-bit mask (high dword); 0 = plain
    movl    $0x80000000, %eax           # highest extended leaf
    cpuid
    testl   %edi, %edi
    jnz     4f                          # #VC: SEV-ES or SNP
    xorl    %edx, %edx
    cmpl    $0x8000001f, %eax
    jb      6f                          # no encrypted-memory leaf: plain
    movl    $0x8000001f, %eax
    cpuid
    xorl    %edx, %edx
    testl   $(1 << 1), %eax             # EAX[1]: SEV supported
    jz      6f
    movl    $0xc0010131, %ecx           # SEV_STATUS
    rdmsr
    xorl    %edx, %edx
    testl   $1, %eax                    # SEV enabled without a #VC: SEV without ES
    jz      6f
    jmp     boot_halt
4:  movl    $0xc0010131, %ecx           # SEV_STATUS
    rdmsr
    testl   $(1 << 2), %eax             # SNP active? (SEV-ES alone: unsupported)
    jz      boot_halt
    movl    $__snp_cpuid_page, %eax     # find Fn8000_001F in the CPUID page
    movl    (%eax), %ecx                # COUNT (at most 64)
    cmpl    $64, %ecx
    ja      boot_halt
5:  testl   %ecx, %ecx
    jz      boot_halt                   # no entry for the leaf: refuse to guess
    cmpl    $0x8000001f, 0x10(%eax)     # entry EAX_IN (entries start at 0x10, 48 bytes each)
    je      7f
    addl    $48, %eax
    decl    %ecx
    jmp     5b
7:  movl    0x2c(%eax), %ecx            # entry EBX (0x10 + 0x1c)
    andl    $0x3f, %ecx                 # EBX[5:0] = C-bit position
    subl    $32, %ecx                   # the C-bit must lie in the high dword (32..51)
    jb      boot_halt
    cmpl    $(51 - 32), %ecx
    ja      boot_halt
    movl    $1, %edx
    shll    %cl, %edx
6:  lidtl   boot_null_idt_ptr           # from here on any exception is a triple fault again
    popl    %ebx

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
    movl    %edx, 4(%edi)               #   (tables are RAM: C-bit)
    leal    0x2003(%edi), %eax          # PDPT[0] = PD0
    movl    %eax, 0x1000(%edi)
    movl    %edx, 0x1004(%edi)
    leal    0x3003(%edi), %eax          # PDPT[1] = PD1 (ROM alias)
    movl    %eax, 0x1008(%edi)
    movl    %edx, 0x100c(%edi)
    leal    0x4003(%edi), %eax          # PDPT[2] = PD2
    movl    %eax, 0x1010(%edi)
    movl    %edx, 0x1014(%edi)
    leal    0x5003(%edi), %eax          # PDPT[3] = PD3
    movl    %eax, 0x1018(%edi)
    movl    %edx, 0x101c(%edi)

    leal    0x2000(%edi), %esi          # PD0: 512 x 2 MiB, P | RW | PS (RAM: C-bit)
    movl    $0x83, %eax
    movl    $512, %ecx
1:  movl    %eax, (%esi)
    movl    %edx, 4(%esi)
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
    movl    %edx, 0x5ffc(%edi)                  #   (guest memory under SNP: C-bit)
    movl    $(ROM_FRAME + 0x81), 0x3000(%edi)   # PD1[0]: alias, P | PS, read-only
    movl    %edx, 0x3004(%edi)                  #   (C-bit)

    movl    %edi, %cr3
    movl    $0xc0000080, %ecx           # EFER.LME
    rdmsr
    orl     $(1 << 8), %eax
    wrmsr
    movl    %cr0, %eax
    orl     $0x80010000, %eax           # CR0.PG | CR0.WP (read-only pages bind the kernel too)
    movl    %eax, %cr0
    ljmpl   $0x18, $boot64

# #VC during detection (32-bit gate; stack: exit code, EIP, CS, EFLAGS). Only CPUID (exit code
# 0x72, GHCB #56421 Table 7) is expected: skip its two bytes and report the trap in EDI.
boot_vc32:
    cmpl    $0x72, (%esp)
    jne     boot_halt
    addl    $4, %esp
    addl    $2, (%esp)
    movl    $1, %edi
    iretl

boot_halt:                              # unsupported or inconsistent platform: fail closed
    cli
    hlt
    jmp     boot_halt

.balign 8
boot_idt_ptr:                           # scratch IDT (vectors 0..29) in the PD0 page
    .word   30 * 8 - 1
    .long   __boot_pt_start + 0x2000
boot_null_idt_ptr:
    .word   0
    .long   0

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
