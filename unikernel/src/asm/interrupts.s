# Interrupt and exception entry stubs (64-bit). Each stub pushes a dummy error code when the CPU
# does not push one, then its vector, and jumps to `trap_common`, which saves every general
# register into a `TrapFrame` (arch/trap.rs) and calls `{trap_handler}(&mut TrapFrame)`.
# Exceptions never return from the handler, except a handled #VC (vector 29: registers and RIP
# updated in the frame); interrupts do, and `iretq` resumes the code.
# The kernel never enables SSE, so there is no FPU/vector state to save.

.section .text.trap, "ax"
.code64

.macro STUB_NOERR vector
    .balign 16
trap_stub_\vector:
    pushq   $0
    pushq   $\vector
    jmp     trap_common
.endm

.macro STUB_ERR vector
    .balign 16
trap_stub_\vector:
    pushq   $\vector
    jmp     trap_common
.endm

# Vectors with a CPU-pushed error code: 8, 10-14, 17, 21, 29, 30.
STUB_NOERR 0
STUB_NOERR 1
STUB_NOERR 2
STUB_NOERR 3
STUB_NOERR 4
STUB_NOERR 5
STUB_NOERR 6
STUB_NOERR 7
STUB_ERR   8
STUB_NOERR 9
STUB_ERR   10
STUB_ERR   11
STUB_ERR   12
STUB_ERR   13
STUB_ERR   14
STUB_NOERR 15
STUB_NOERR 16
STUB_ERR   17
STUB_NOERR 18
STUB_NOERR 19
STUB_NOERR 20
STUB_ERR   21
STUB_NOERR 22
STUB_NOERR 23
STUB_NOERR 24
STUB_NOERR 25
STUB_NOERR 26
STUB_NOERR 27
STUB_NOERR 28
STUB_ERR   29
STUB_ERR   30
STUB_NOERR 31
# Interrupt vectors the kernel uses (arch/trap.rs: VECTOR_*), and one for all others.
STUB_NOERR 48
STUB_NOERR 49
STUB_NOERR 255
STUB_NOERR 256

trap_common:
    pushq   %rax
    pushq   %rbx
    pushq   %rcx
    pushq   %rdx
    pushq   %rsi
    pushq   %rdi
    pushq   %rbp
    pushq   %r8
    pushq   %r9
    pushq   %r10
    pushq   %r11
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    movq    %rsp, %rdi                  # &mut TrapFrame; RSP is 16-byte aligned here
    cld
    call    {trap_handler}
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %r11
    popq    %r10
    popq    %r9
    popq    %r8
    popq    %rbp
    popq    %rdi
    popq    %rsi
    popq    %rdx
    popq    %rcx
    popq    %rbx
    popq    %rax
    addq    $16, %rsp                   # vector and error code
    iretq

# Stub addresses for the IDT: 32 exceptions, then 48, 49, 255 and the catch-all.
.section .rodata.trap_stubs, "a"
.balign 8
.globl ukvtpm_trap_stubs
ukvtpm_trap_stubs:
    .quad trap_stub_0, trap_stub_1, trap_stub_2, trap_stub_3
    .quad trap_stub_4, trap_stub_5, trap_stub_6, trap_stub_7
    .quad trap_stub_8, trap_stub_9, trap_stub_10, trap_stub_11
    .quad trap_stub_12, trap_stub_13, trap_stub_14, trap_stub_15
    .quad trap_stub_16, trap_stub_17, trap_stub_18, trap_stub_19
    .quad trap_stub_20, trap_stub_21, trap_stub_22, trap_stub_23
    .quad trap_stub_24, trap_stub_25, trap_stub_26, trap_stub_27
    .quad trap_stub_28, trap_stub_29, trap_stub_30, trap_stub_31
    .quad trap_stub_48, trap_stub_49, trap_stub_255, trap_stub_256
