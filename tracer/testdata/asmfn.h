/* ASM_FN(name, body): a function written in assembly, with its symbol's type
 * and size, so that a uprobe can be attached by name at its first
 * instruction: the benchmarks' probe sites (firstinsn.c, coldhit.c). */
#ifndef ASMFN_H
#define ASMFN_H

#define ASM_FN(name, body)                             \
	__asm__(".text\n.globl " #name "\n"            \
		".type " #name ",@function\n" #name ":\n" body \
		".size " #name ", .-" #name "\n");     \
	void name(void);

#endif
