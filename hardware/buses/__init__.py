"""Serial servo buses (Feetech SCS/STS, Dynamixel Protocol 2.0) over an injected transport."""
